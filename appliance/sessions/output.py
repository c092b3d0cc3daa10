"""Bounds on what a guest's output may cost the host.

Whatever runs in a guest (an agent told to by a prompt injection, a runaway build) can print
without end. The host keeps only a bounded amount of it, keeps the *tail* (where the outcome and
the error are), and says what it cut instead of dropping it silently:

* `LineSplitter` — output split into lines with a bounded partial-line buffer: a "line" that grows
  past `max_line` bytes without a newline is cut (its start and size are reported);
* `EventBudget` — at most `limit` stored events of guest output per turn; past it the newest
  `tail` are held back and stored at the end of the turn after one event saying how many were cut.

(`GuestSSH.exec` bounds what one command's output costs in memory; transcripts are bounded where
they are kept, in the runner.)
"""

from __future__ import annotations

import collections
from collections.abc import Callable

PREVIEW = 200  # bytes of a cut line shown in the notice
TAIL = 200  # events held back (and stored) once a turn's budget is spent


class LineSplitter:
    """Feed bytes, get whole lines (without the newline) through `on_line`."""

    def __init__(self, on_line: Callable[[str], None], max_line: int, on_cut: Callable[[str, int], None]):
        self.on_line, self.max_line, self.on_cut = on_line, max_line, on_cut
        self._pending = bytearray()
        self._cutting = 0  # bytes of the current overlong line seen so far (0: not cutting)
        self._preview = b""

    def feed(self, data: bytes) -> None:
        while data:
            newline = data.find(b"\n")
            chunk, data = (data, b"") if newline < 0 else (data[:newline], data[newline + 1:])
            if self._cutting:
                self._cutting += len(chunk)
            else:
                self._pending += chunk
                if len(self._pending) > self.max_line:
                    self._preview = bytes(self._pending[:PREVIEW])
                    self._cutting = len(self._pending)
                    self._pending.clear()
            if newline >= 0:
                self._end_line()

    def close(self) -> None:
        """The output ended: whatever is pending is the last line."""
        if self._pending or self._cutting:
            self._end_line()

    def _end_line(self) -> None:
        if self._cutting:
            self.on_cut(self._preview.decode(errors="replace"), self._cutting)
            self._cutting, self._preview = 0, b""
        else:
            line = bytes(self._pending)
            self._pending.clear()
            self.on_line(line.decode(errors="replace"))


def cut_line_notice(preview: str, size: int, max_line: int) -> str:
    return (f"[a line of {size} bytes was cut (over the {max_line // 1024} KiB line limit, agent_line_max_kb); "
            f"it began: {preview!r}]")


class EventBudget:
    """Stores at most `limit` events through `emit(kind, data)`; beyond that keeps the last `tail`
    and, at `finish()`, stores a notice of what was cut followed by them."""

    def __init__(self, emit: Callable[[str, dict], object], limit: int, tail: int = TAIL):
        self._emit, self.limit = emit, limit
        self.stored = 0
        self.cut = 0
        self._held: collections.deque = collections.deque(maxlen=tail)

    def __call__(self, kind: str, data: dict) -> None:
        if self.stored < self.limit:
            self.stored += 1
            self._emit(kind, data)
        else:
            self.cut += 1
            self._held.append((kind, data))

    def finish(self) -> None:
        if not self.cut:
            return
        dropped = self.cut - len(self._held)
        if dropped:
            self._emit("log", {"stream": "appliance", "text": (
                f"[{dropped} events of guest output were not stored: over the limit of {self.limit} per turn "
                f"(max_events_per_turn); the last {len(self._held)} follow]")})
        for kind, data in self._held:
            self._emit(kind, data)
        self._held.clear()
        self.cut = 0
