"""Events: JSON round trips, tolerant loading, shortening."""

from __future__ import annotations

import dataclasses
import json

import pytest

from appliance.agents.events import (
    Command,
    Error,
    Event,
    Log,
    Message,
    Status,
    ToolResult,
    ToolUse,
    TurnResult,
    event_kind,
    one_line,
    shorten,
)

SAMPLES = [
    Status(text="started"),
    Log(text="a line", stream="stderr", level="warning"),
    Message(text="Changed the greeting."),
    ToolUse(id="t1", name="Read", summary="hello.txt", input={"file_path": "/w/hello.txt"}),
    ToolResult(id="t1", ok=False, output="boom", name="Read"),
    Command(command="make test", exit_code=2, output="FAILED", id="i3"),
    Command(command="sleep 99", exit_code=None),
    Error(message="model API unreachable", hint="check the egress proxy"),
    TurnResult(ok=True, session_id="abc", summary="done", exit_code=0, cost_usd=0.5, usage={"input_tokens": 3},
               duration_ms=10, num_turns=2),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.kind)
def test_round_trip_through_json(event):
    data = json.loads(json.dumps(event.to_dict()))
    assert data["kind"] == event.kind
    assert Event.from_dict(data) == event


def test_kinds_are_distinct_and_named():
    kinds = [e.kind for e in SAMPLES]
    assert set(kinds) == {"status", "log", "message", "tool_use", "tool_result", "command", "error", "turn_result"}


def test_unknown_fields_are_ignored_and_unknown_kinds_become_logs():
    assert Event.from_dict({"kind": "message", "text": "hi", "added_later": 1}) == Message(text="hi")
    e = Event.from_dict({"kind": "teleported", "to": "laptop"})
    assert isinstance(e, Log) and "teleported" in e.text and e.level == "warning"


def test_other_modules_register_kinds():
    @event_kind
    @dataclasses.dataclass(frozen=True)
    class DiffStatForTest(Event):
        kind = "test_diff_stat"
        added: int
        removed: int

    e = Event.from_dict({"kind": "test_diff_stat", "added": 12, "removed": 1})
    assert e == DiffStatForTest(added=12, removed=1)
    with pytest.raises(ValueError):
        event_kind(type("Again", (Message,), {"kind": "message"}))


def test_shorten_keeps_head_and_tail():
    text = "".join(f"line {i}\n" for i in range(2000))
    short = shorten(text, 200)
    assert len(short) < 260 and short.startswith("line 0\n") and short.rstrip().endswith("line 1999")
    assert "characters cut" in short
    assert shorten("small") == "small"


def test_one_line():
    assert one_line("first\nsecond") == "first…"
    assert one_line("x" * 300, 10) == "x" * 9 + "…"
    assert one_line("  plain  ") == "plain"
    assert one_line("") == ""
