"""`appliance ssh SESSION`: the local terminal attached to a shell in the session's guest, through
the appliance's websocket (`/api/v1/sessions/<id>/terminal`): the laptop never reaches the guest's
network. Binary frames are terminal bytes; text frames are JSON control messages."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading

from ..errors import ApplianceError
from .api import Client


def attach(client: Client, session_id: str, stdin=None, stdout=None) -> int:
    import simple_websocket

    client.get(f"/sessions/{session_id}")  # a clear 404 / 401 before the websocket
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    try:
        ws = simple_websocket.Client.connect(client.websocket_url(f"/sessions/{session_id}/terminal"),
                                             headers={"Authorization": f"Bearer {client.token}"},
                                             ssl_context=client.ssl_context)
    except ApplianceError:
        raise  # the certificate changed: said clearly, nothing sent
    except Exception as e:
        raise ApplianceError(f"the appliance refused the terminal of {session_id}: {e}",
                             hint="only the session's owner (or an admin) may open it, while its guest runs") from None
    fd = stdin.fileno()
    is_tty = os.isatty(fd)
    cols, rows = os.get_terminal_size(fd) if is_tty else (80, 24)

    def send(data) -> None:
        # The appliance may already have said why and closed (no running guest, the shell exited):
        # what it said is still buffered for the reader, so a send into a closed socket is no error.
        try:
            ws.send(data)
        except simple_websocket.ConnectionClosed:
            pass

    send(json.dumps({"resize": [cols, rows]}))
    result = {"exit": 1, "error": None}

    def pump_in():
        try:
            while True:
                msg = ws.receive()
                if msg is None:
                    break
                if isinstance(msg, bytes):
                    os.write(stdout.fileno(), msg)
                else:
                    ctl = json.loads(msg)
                    if "exit" in ctl:
                        result["exit"] = ctl["exit"]
                    if "error" in ctl:
                        result["error"] = ctl
        except Exception:
            pass

    reader = threading.Thread(target=pump_in, daemon=True)
    reader.start()
    saved = None
    if is_tty:
        import termios
        import tty

        saved = termios.tcgetattr(fd)
        tty.setraw(fd)
        signal.signal(signal.SIGWINCH, lambda *_: send(json.dumps({"resize": list(os.get_terminal_size(fd))})))
    try:
        while reader.is_alive() and ws.connected:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                data = os.read(fd, 4096)
                if not data:
                    if not is_tty:
                        send(b"\x04")  # end of input for the guest's shell (Ctrl-D on its pty)
                        reader.join()  # its output and exit status are still coming
                    break
                send(data)
        reader.join(timeout=2)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        try:
            ws.close()
        except Exception:
            pass
    if result["error"]:
        raise ApplianceError(result["error"]["error"], hint=result["error"].get("hint", ""))
    return int(result["exit"] or 0)
