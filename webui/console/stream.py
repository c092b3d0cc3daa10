"""The live event stream of a session over a websocket.

`/ws/sessions/<id>/events?after=N` sends every event with an id above N, oldest first, then each new
one as it is emitted, as JSON text frames. Event ids only grow, so a client that reconnects with the
last id it saw gets exactly what it missed: no gap, no repeat. The caller is checked on connect and
again while following (a session made private stops streaming to those who lost access)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from flask import request

from appliance.accounts.models import User
from appliance.errors import Invalid
from appliance.sessions.access import may_view
from appliance.sessions.models import Session
from appliance.sessions.stream import wait_for_events

from ..params import query_int
from . import viewer

WAIT = 10.0  # seconds per wait; a ping goes out after each idle wait, so dead clients are noticed
NOT_FOUND = 4404  # the websocket close code for "no such session (for you)"


def same_origin() -> bool:
    """Browsers send Origin on websocket handshakes; refuse other sites (cross-site hijacking)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser (tests, CLI); the cookie still has to be valid
    # cookies do not tell ports apart either, so the host name is what matters
    return urlsplit(origin).hostname == urlsplit(f"//{request.host}").hostname


def register(sock) -> None:
    @sock.route("/ws/sessions/<session_id>/events")
    def session_events(ws, session_id):
        from .sessions import event_view

        user = viewer()
        session = Session.get_or_none(Session.id == session_id)
        if user is None or session is None or not may_view(user, session) or not same_origin():
            ws.close(reason=NOT_FOUND, message="not found")
            return
        try:
            after = query_int("after", 0)
        except Invalid as e:
            ws.close(reason=1008, message=e.message[:120])  # 1008: policy violation (a bad request)
            return
        while True:
            events = wait_for_events(session.id, after, WAIT)
            current = Session.get_or_none(Session.id == session.id)
            user = User.get_or_none(User.id == user.id)  # fresh: disabled or removed since it connected
            if current is None or user is None or user.disabled or not may_view(user, current):
                ws.close(reason=NOT_FOUND, message="not found")
                return
            if not events:
                ws.send(json.dumps({"kind": "ping", "status": current.status}))
                continue
            for e in events:
                view = event_view(e, with_html=True)
                view["data"] = e.data
                ws.send(json.dumps(view))
                after = e.id
