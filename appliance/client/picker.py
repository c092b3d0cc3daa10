"""`appliance tasks` on a terminal: the list with one row picked (↑/↓ or j/k), `t` teleports to the
picked session in this checkout, `r` refreshes, `q` (or Esc, Ctrl-C) leaves. Used only when stdin
and stdout are both terminals; pipes and scripts keep getting the plain table."""

from __future__ import annotations

import os
import select
import termios
import tty
from collections.abc import Callable

KEYS = {b"\x1b[A": "up", b"\x1bOA": "up", b"k": "up", b"\x1b[B": "down", b"\x1bOB": "down", b"j": "down",
        b"t": "teleport", b"r": "refresh", b"q": "quit", b"\x1b": "quit", b"\x04": "quit"}
HELP = "↑/↓ pick · t teleport to it here · r refresh · q quit"


def pick(sessions: list[dict], load: Callable[[], list[dict]], lines_of: Callable[[list[dict]], list[str]], *,
         fd_in: int, out, refresh_every: float | None = None) -> dict | None:
    """Show `lines_of(sessions)` (a header, then one line per session) with a moving cursor until a
    key decides: the session to teleport to, or None. `load()` reads the sessions again on `r` and,
    with `refresh_every` seconds, whenever that long passes without a key."""
    cursor = 0
    saved = termios.tcgetattr(fd_in)
    tty.setcbreak(fd_in)  # one key at a time, no echo; Ctrl-C still interrupts
    try:
        while True:
            cursor = min(cursor, max(len(sessions) - 1, 0))
            _draw(out, lines_of(sessions), cursor if sessions else None)
            if not select.select([fd_in], [], [], refresh_every)[0]:
                sessions = load()
                continue
            key = KEYS.get(os.read(fd_in, 16))
            if key == "quit":
                return None
            if key == "up":
                cursor = max(cursor - 1, 0)
            elif key == "down":
                cursor = min(cursor + 1, len(sessions) - 1)
            elif key == "refresh":
                sessions = load()
            elif key == "teleport" and sessions:
                return sessions[cursor]
    finally:
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
        out.write("\033[?25h")
        out.flush()


def _draw(out, lines: list[str], cursor: int | None) -> None:
    """The table, the picked row marked with `>` and shown in reverse video, and the keys."""
    screen = ["\033[H\033[2J\033[?25l", "  " + lines[0]]
    for i, line in enumerate(lines[1:]):
        screen.append(f"\033[7m> {line}\033[0m" if i == cursor else f"  {line}")
    screen += ["", HELP]
    out.write("\r\n".join(screen) + "\r\n")
    out.flush()
