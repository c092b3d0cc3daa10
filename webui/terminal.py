"""One terminal for every client: a websocket bridged to a shell in the session's live guest
(`SessionService.open_shell`). Two framings speak to the two clients:

- the API (`WS /api/v1/sessions/<id>/terminal`, used by `appliance ssh`): binary frames carry
  terminal bytes both ways; text frames are JSON control messages: client → `{"resize": [cols,
  rows]}`; server → `{"error": …, "hint": …}` or `{"exit": code}` at the end;
- the console (`/ws/sessions/<id>/terminal`, xterm.js): client → `{"d": "keys"}` / `{"r": [cols,
  rows]}`; server → the shell's output as text (UTF-8 decoded incrementally).

Both clients send their size first; the shell is opened with it.
"""

from __future__ import annotations

import codecs
import json
import logging
import threading

from flask import Blueprint, request
from flask_sock import Sock

from appliance.accounts.models import User
from appliance.errors import ApplianceError, Forbidden

from .api import appliance_error, require_token
from .app import services
from .auth import current_user

log = logging.getLogger(__name__)

FIRST_FRAME_WAIT = 5.0  # seconds to wait for the client's size before opening the shell at 80x24


class ApiFraming:
    def __init__(self):
        self.exit_code = None

    @staticmethod
    def parse(frame) -> tuple[bytes | None, tuple | None]:
        """(keystrokes, (cols, rows)) from one client frame; either may be None."""
        if isinstance(frame, bytes):
            return frame, None
        try:
            size = json.loads(frame).get("resize")
            return None, (int(size[0]), int(size[1])) if size else None
        except (ValueError, TypeError, AttributeError, IndexError):
            return None, None

    @staticmethod
    def output(data: bytes):
        return data

    @staticmethod
    def error(ws, e: ApplianceError) -> None:
        ws.send(json.dumps({"error": e.message, "hint": e.hint} if e.hint else {"error": e.message}))

    @staticmethod
    def ended(ws, shell) -> None:
        ws.send(json.dumps({"exit": shell.exit_status()}))
        ws.close()


class ConsoleFraming:
    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @staticmethod
    def parse(frame) -> tuple[bytes | None, tuple | None]:
        try:
            msg = json.loads(frame)
        except (ValueError, TypeError):
            return None, None
        if isinstance(msg, dict) and isinstance(msg.get("d"), str):
            return msg["d"].encode(), None
        if isinstance(msg, dict) and isinstance(msg.get("r"), list) and len(msg["r"]) == 2:
            try:
                return None, (int(msg["r"][0]), int(msg["r"][1]))
            except (ValueError, TypeError):
                return None, None
        return None, None

    def output(self, data: bytes):
        return self._decoder.decode(data)

    @staticmethod
    def error(ws, e: ApplianceError) -> None:
        ws.send(f"\r\n{e.message}" + (f" ({e.hint})" if e.hint else "") + "\r\n")
        ws.close(reason=1000, message="no guest")

    @staticmethod
    def ended(ws, shell) -> None:
        ws.close(reason=1000, message="shell ended")


def _disabled(user) -> bool:
    fresh = User.get_or_none(User.id == user.id)
    return fresh is None or fresh.disabled


def serve(ws, user, session_id: str, framing) -> None:
    """Bridge `ws` to a shell in the session's guest until either side ends."""
    sessions = services().sessions
    try:
        sessions.shell_guest(user, session_id)  # no guest: said at once, before waiting for the client
        first = ws.receive(timeout=FIRST_FRAME_WAIT)
        keys, size = framing.parse(first) if first is not None else (None, None)
        shell = sessions.open_shell(user, session_id, *(size or (80, 24)))
    except ApplianceError as e:
        framing.error(ws, e)
        return
    if keys:
        shell.write(keys)
    done = threading.Event()

    def pump_out():
        try:
            while not done.is_set():
                data = shell.read()
                if not data:
                    break
                ws.send(framing.output(data))
            framing.ended(ws, shell)
        except Exception:  # the client went away
            pass
        finally:
            done.set()

    reader = threading.Thread(target=pump_out, daemon=True, name=f"terminal-{session_id}")
    reader.start()
    try:
        while not done.is_set() and not shell.closed:
            frame = ws.receive(timeout=1.0)
            if frame is None:
                continue
            keys, size = framing.parse(frame)
            if keys and _disabled(user):  # an admin disabled the user while the shell was open
                framing.error(ws, Forbidden("your account was disabled; the shell was closed", hint="ask an admin"))
                ws.close()
                break
            if keys:
                shell.write(keys)
            if size:
                shell.resize(*size)
    except Exception:  # ConnectionClosed: the client left
        pass
    finally:
        done.set()
        shell.close()
        reader.join(timeout=5)


# --- the API's websocket --------------------------------------------------------------------------

bp = Blueprint("terminal", __name__, url_prefix="/api/v1")
bp.register_error_handler(ApplianceError, appliance_error)
sock = Sock()


@bp.before_request
def _check_before_the_handshake():
    # Runs before the websocket handshake, so a refused terminal is a plain HTTP 401/404.
    require_token()
    services().sessions.owned(current_user(), request.view_args["session_id"])


@sock.route("/sessions/<session_id>/terminal", bp=bp)
def terminal(ws, session_id):
    serve(ws, current_user(), session_id, ApiFraming())


__all__ = ["ApiFraming", "ConsoleFraming", "bp", "serve"]
