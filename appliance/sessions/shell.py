"""An interactive shell in a session's live guest: what every terminal drives (the console's
xterm.js page and `appliance ssh` through the API's websocket), so both see the same rules —
which guest counts as live, how a pty is sized, how much is read at a time."""

from __future__ import annotations

from ..errors import ApplianceError

READ_SIZE = 65536
MIN_SIZE, MAX_SIZE = 10, 1000  # a pty's columns and rows are clamped to this


class NoGuest(ApplianceError):
    """The session has no running guest to open a shell in (or to read a live transcript from)."""


def clamp(value) -> int:
    return max(MIN_SIZE, min(int(value), MAX_SIZE))


class GuestShell:
    """A login shell with a pty over the guest's SSH connection. Read until `read()` returns b"",
    then `exit_status()`; `close()` always (idempotent)."""

    def __init__(self, ssh, cols: int = 80, rows: int = 24):
        self._ssh = ssh
        try:
            ssh.connect()
            self._chan = ssh.transport.open_session()
            self._chan.get_pty(term="xterm-256color", width=clamp(cols), height=clamp(rows))
            self._chan.invoke_shell()
        except Exception as e:  # the guest went away between the check and now
            ssh.close()
            raise NoGuest(f"cannot reach the guest: {e}", hint="try again; a follow-up message starts a fresh guest") from e

    @property
    def closed(self) -> bool:
        return bool(self._chan.closed)

    def read(self) -> bytes:
        return self._chan.recv(READ_SIZE)

    def write(self, data: bytes) -> None:
        self._chan.sendall(data)

    def resize(self, cols, rows) -> None:
        self._chan.resize_pty(width=clamp(cols), height=clamp(rows))

    def exit_status(self) -> int:
        return self._chan.recv_exit_status()

    def close(self) -> None:
        try:
            self._chan.close()
        finally:
            self._ssh.close()
