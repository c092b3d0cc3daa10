"""A terminal in the browser into the session's live guest: xterm.js ⇄ websocket ⇄ an SSH pty.

Only the session's owner and admins get one (anyone else: closed as not found). Frames from the
browser are JSON: {"d": "keystrokes"} or {"r": [cols, rows]}; frames to it are the shell's output
as text."""

from __future__ import annotations

import codecs
import json
import logging
import threading

from flask import current_app

from appliance.models import Sandbox
from appliance.sessions.access import may_change, may_view
from appliance.sessions.models import Session

from . import viewer
from .stream import NOT_FOUND, same_origin

log = logging.getLogger(__name__)


def guest_ssh(sandbox: Sandbox):
    """SSH to a guest: through the app's SandboxManager when it has one, else from the sandbox's files."""
    manager = current_app.config.get("SANDBOXES")
    if manager is not None:
        return manager.ssh(sandbox)
    from appliance.sandbox.guest_ssh import GuestSSH
    from appliance.sandbox.manager import SandboxFiles

    cfg = current_app.config["APPLIANCE"]
    files = SandboxFiles(cfg.sandbox_dir / sandbox.id)
    return GuestSSH(sandbox.address, cfg.guest_user, files.client_key.read_text(), files.host_key_pub.read_text())


def register(sock) -> None:
    @sock.route("/ws/sessions/<session_id>/terminal")
    def session_terminal(ws, session_id):
        user = viewer()
        session = Session.get_or_none(Session.id == session_id)
        if (user is None or session is None or not may_view(user, session) or not may_change(user, session)
                or not same_origin()):
            ws.close(reason=NOT_FOUND, message="not found")
            return
        sandbox = Sandbox.get_or_none(Sandbox.id == session.sandbox_id) if session.sandbox_id else None
        if sandbox is None or not sandbox.live:
            ws.send("\r\nThis session has no running guest (it boots with the next turn).\r\n")
            ws.close(reason=1000, message="no guest")
            return
        ssh = guest_ssh(sandbox)
        try:
            ssh.connect()
            chan = ssh.transport.open_session()
            chan.get_pty(term="xterm-256color", width=80, height=24)
            chan.invoke_shell()
        except Exception as e:  # the guest went away between the check and now
            ssh.close()
            ws.send(f"\r\nCould not reach the guest: {e}\r\n")
            ws.close(reason=1000, message="unreachable")
            return
        done = threading.Event()

        def pump_out():
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            try:
                while not done.is_set():
                    data = chan.recv(32768)
                    if not data:
                        break
                    ws.send(decoder.decode(data))
            except Exception:  # the browser went away
                pass
            finally:
                done.set()
                try:
                    ws.close(reason=1000, message="shell ended")
                except Exception:
                    pass

        reader = threading.Thread(target=pump_out, daemon=True, name=f"terminal-{session.id}")
        reader.start()
        try:
            while not done.is_set():
                frame = ws.receive(timeout=1.0)
                if frame is None:
                    continue
                try:
                    msg = json.loads(frame)
                except (ValueError, TypeError):
                    continue
                if isinstance(msg, dict) and isinstance(msg.get("d"), str):
                    chan.sendall(msg["d"].encode())
                elif isinstance(msg, dict) and isinstance(msg.get("r"), list) and len(msg["r"]) == 2:
                    cols, rows = (max(10, min(int(x), 1000)) for x in msg["r"])
                    chan.resize_pty(width=cols, height=rows)
        except Exception:  # ConnectionClosed: the browser left
            pass
        finally:
            done.set()
            chan.close()
            ssh.close()
            reader.join(timeout=5)
