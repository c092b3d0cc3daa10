"""The command adapter and the registry."""

from __future__ import annotations

import pytest

from appliance import agents
from appliance.agents.base import TurnSpec
from appliance.agents.events import Command, Log, TurnResult
from appliance.errors import ApplianceError, NotFound


def test_command_invocation():
    spec = TurnSpec(prompt="add a line", workdir="/home/agent/repo", command="./scripts/change.sh --fast",
                    env={"EXTRA": "1"})
    inv = agents.get("command").invocation(spec)
    assert inv.argv == ("bash", "-c", "./scripts/change.sh --fast")
    assert inv.env["APPLIANCE_PROMPT"] == "add a line" and inv.env["EXTRA"] == "1" and inv.env["HOME"] == "/home/agent"
    assert not any("KEY" in k for k in inv.env)  # no model, no credential
    assert inv.session_id is None and inv.transcript is None and inv.cwd == "/home/agent/repo"


def test_command_needs_a_command():
    with pytest.raises(ApplianceError) as e:
        agents.get("command").invocation(TurnSpec(prompt="x", workdir="/w"))
    assert e.value.hint


def test_command_output_and_result():
    spec = TurnSpec(prompt="", workdir="/w", command="make")
    parser = agents.get("command").parser(spec)
    events = [e for line in ["building\n", "", '{"type":"result"}', "done"] for e in parser.parse(line)]
    assert events == [Log(text="building"), Log(text='{"type":"result"}'), Log(text="done")]
    closing = parser.finish_events(2, "make: *** [all] Error 2\n")
    assert closing[0] == Command(command="make", exit_code=2)
    assert isinstance(closing[1], TurnResult) and not closing[1].ok and closing[1].session_id is None
    assert closing[1].error == "the command exited with status 2: make: *** [all] Error 2"
    ok = parser.finish(0)
    assert ok.ok and ok.summary == "done" and ok.error == ""


def test_registry():
    assert agents.names() == ["claude-code", "codex", "command"]
    assert agents.DEFAULT == "claude-code" and agents.get().name == "claude-code" and agents.get(None).name == "claude-code"
    with pytest.raises(agents.UnknownAgent) as e:
        agents.get("aider")
    assert isinstance(e.value, NotFound) and "claude-code" in e.value.hint


def test_stderr_lines_are_log_events():
    assert agents.stderr_event("warning: x\n") == Log(text="warning: x", stream="stderr")
