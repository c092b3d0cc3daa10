"""The console's terminal tab: xterm.js ⇄ websocket ⇄ the shared terminal (webui/terminal.py).

Only the session's owner and admins get one (anyone else: closed as not found, exactly like a
session that does not exist)."""

from __future__ import annotations

from appliance.errors import NotFound

from ..app import services
from ..terminal import ConsoleFraming, serve
from . import viewer
from .stream import NOT_FOUND, same_origin


def register(sock) -> None:
    @sock.route("/ws/sessions/<session_id>/terminal")
    def session_terminal(ws, session_id):
        user = viewer()
        try:
            if user is None or not same_origin():
                raise NotFound("not found")
            services().sessions.owned(user, session_id)
        except NotFound:
            ws.close(reason=NOT_FOUND, message="not found")
            return
        serve(ws, user, session_id, ConsoleFraming())
