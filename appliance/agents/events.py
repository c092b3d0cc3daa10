"""Typed events of a turn, as the console and the session log see them.

An adapter turns each line its agent prints into zero or more of these; the session engine adds
its own (status, the diff stat, ...) and stores them as JSON (`to_dict()` / `from_dict()`). Every
event has a `kind`; the fields are plain JSON values. Other modules add kinds with `@event_kind`.

Kinds defined here:
  status       something the appliance or the agent reports about the turn's progress
  log          an unstructured line (the agent's stderr, a line no parser understood, a hook's output)
  message      text the agent wrote for the person
  tool_use     the agent called a tool (name and a one-line summary of the input)
  tool_result  what the tool returned (ok or not, output shortened)
  command      a shell command finished, with its exit code (Codex's shell, the `command` agent)
  error        something went wrong (not necessarily the end of the turn)
  turn_result  how the turn ended: ok or not, the agent's session id, cost and usage when known
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

_KINDS: dict[str, type["Event"]] = {}

# Outputs kept in events are shortened to this many characters (head and tail kept).
OUTPUT_LIMIT = 2000


def event_kind(cls):
    """Class decorator: register an Event subclass under its `kind` for `Event.from_dict`."""
    if not cls.kind or cls.kind in _KINDS and _KINDS[cls.kind] is not cls:
        raise ValueError(f"event kind {cls.kind!r} is empty or already registered")
    _KINDS[cls.kind] = cls
    return cls


@dataclasses.dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind}
        d.update(dataclasses.asdict(self))
        return d

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Event":
        """The event a `to_dict()` made. Unknown fields are ignored (events written by a newer
        appliance still load); an unknown kind becomes a `Log` showing the raw data."""
        cls = _KINDS.get(str(data.get("kind", "")))
        if cls is None:
            return Log(text=f"unknown event {data!r}"[:OUTPUT_LIMIT], stream="appliance", level="warning")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@event_kind
@dataclasses.dataclass(frozen=True)
class Status(Event):
    kind: ClassVar[str] = "status"
    text: str


@event_kind
@dataclasses.dataclass(frozen=True)
class Log(Event):
    kind: ClassVar[str] = "log"
    text: str
    stream: str = "stdout"  # stdout | stderr | appliance | hook
    level: str = "info"  # debug | info | warning


@event_kind
@dataclasses.dataclass(frozen=True)
class Message(Event):
    kind: ClassVar[str] = "message"
    text: str


@event_kind
@dataclasses.dataclass(frozen=True)
class ToolUse(Event):
    kind: ClassVar[str] = "tool_use"
    id: str  # links the result (ToolResult.id / Command.id)
    name: str  # the agent's tool name: Read, Edit, Bash, shell, apply_patch, ...
    summary: str  # one line: the file, the command, the pattern
    input: dict | None = None  # the full input when it is small, else None


@event_kind
@dataclasses.dataclass(frozen=True)
class ToolResult(Event):
    kind: ClassVar[str] = "tool_result"
    id: str
    ok: bool
    output: str = ""  # shortened
    name: str = ""  # the tool's name, when the parser knows it


@event_kind
@dataclasses.dataclass(frozen=True)
class Command(Event):
    kind: ClassVar[str] = "command"
    command: str
    exit_code: int | None  # None: killed or unknown
    output: str = ""  # shortened
    id: str = ""  # the ToolUse that started it, if any


@event_kind
@dataclasses.dataclass(frozen=True)
class Error(Event):
    kind: ClassVar[str] = "error"
    message: str
    hint: str = ""


@event_kind
@dataclasses.dataclass(frozen=True)
class TurnResult(Event):
    kind: ClassVar[str] = "turn_result"
    ok: bool
    session_id: str | None = None  # the agent's own session id: the next turn resumes it
    summary: str = ""  # the agent's final text
    error: str = ""  # why the turn failed (empty when ok)
    exit_code: int | None = None
    cost_usd: float | None = None
    usage: dict | None = None  # token counts as the agent reported them
    duration_ms: int | None = None
    num_turns: int | None = None  # model round trips, when the agent counts them


def shorten(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """`text` cut to about `limit` characters, keeping its head and tail."""
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    half = max(1, (limit - 40) // 2)
    return f"{text[:half]}\n… ({len(text) - 2 * half} characters cut) …\n{text[-half:]}"


def one_line(text: str, limit: int = 200) -> str:
    """The first line of `text`, at most `limit` characters (an ellipsis marks a cut)."""
    text = str(text).strip()
    first = text.splitlines()[0] if text else ""
    cut = first != text
    if len(first) > limit:
        first, cut = first[: limit - 1], True
    return first + ("…" if cut else "")
