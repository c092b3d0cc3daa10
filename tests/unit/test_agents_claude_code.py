"""The claude-code adapter: its command line and environment, and its parser on output recorded
from the real CLI (tests/unit/fixtures/agents/claude_*.jsonl, made by
tests/integration/test_agents_cli.py with APPLIANCE_RECORD_AGENT_FIXTURES=1)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from appliance import agents
from appliance.agents.base import PLACEHOLDER_KEY, ModelSettings, TurnSpec
from appliance.agents.claude_code import tool_summary
from appliance.agents.events import Error, Log, Message, ToolResult, ToolUse
from appliance.errors import ApplianceError

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
SID = "0b6e7c3a-1f5e-4c1e-9d55-3d2f2a7f9a10"


def replay(name: str):
    meta = json.loads((FIXTURES / f"{name}.meta.json").read_text())
    spec = TurnSpec(prompt="x", workdir=meta["workdir"])
    parser = agents.get("claude-code").parser(spec)
    events = [e for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines() for e in parser.parse(line)]
    return events, parser.finish(meta["exit_code"], meta["stderr_tail"])


# ---------------------------------------------------------------- invocation


def test_first_turn_command_line_and_environment():
    spec = TurnSpec(prompt="-fix the bug", workdir="/home/agent/repo", session_id=SID)
    inv = agents.get().invocation(spec)
    assert inv.argv == ("claude", "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
                        "--dangerously-skip-permissions", "--session-id", SID)
    # the prompt is the first stream-json message on stdin (never argv: no option injection, no size limit)
    assert inv.steerable and json.loads(inv.stdin) == {
        "type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "-fix the bug"}]}}
    assert (inv.cwd, inv.user, inv.session_id) == ("/home/agent/repo", "agent", SID)
    assert inv.env == {
        "HOME": "/home/agent", "USER": "agent", "LOGNAME": "agent", "LANG": "C.UTF-8",
        "PATH": "/home/agent/.local/bin:/usr/local/bin:/usr/bin:/bin",
        "CLAUDE_CONFIG_DIR": "/home/agent/.claude",
        "ANTHROPIC_API_KEY": PLACEHOLDER_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_REMOTE": "true",
    }
    assert inv.transcript.path == f"/home/agent/.claude/projects/-home-agent-repo/{SID}.jsonl"
    assert inv.transcript.extra_dir == f"/home/agent/.claude/projects/-home-agent-repo/{SID}"


def test_a_new_session_gets_an_id_up_front():
    inv = agents.get("claude-code").invocation(TurnSpec(prompt="go", workdir="/w"))
    sid = inv.argv[inv.argv.index("--session-id") + 1]
    assert inv.session_id == sid and len(sid) == 36 and inv.transcript.path.endswith(f"/{sid}.jsonl")


def test_resume_model_base_url_and_extra_env():
    spec = TurnSpec(prompt="more", workdir="/w", resume=SID, user="dev", home="/srv/dev",
                    model=ModelSettings(base_url="https://api.anthropic.com", model="claude-sonnet-4-5",
                                        api_key_env="ANTHROPIC_AUTH_TOKEN", api_key="ph"),
                    env={"HTTPS_PROXY": "http://10.0.0.1:3128", "DISABLE_TELEMETRY": "0"}, timeout=60)
    inv = agents.get("claude-code", executable="/opt/claude").invocation(spec)
    assert inv.argv[0] == "/opt/claude"
    assert inv.argv[-4:] == ("--model", "claude-sonnet-4-5", "--resume", SID)
    assert json.loads(inv.stdin)["message"]["content"][0]["text"] == "more"
    assert "--session-id" not in inv.argv and inv.session_id == SID
    assert inv.env["ANTHROPIC_AUTH_TOKEN"] == "ph" and "ANTHROPIC_API_KEY" not in inv.env
    assert inv.env["ANTHROPIC_BASE_URL"] == "https://api.anthropic.com"
    assert inv.env["HTTPS_PROXY"] == "http://10.0.0.1:3128" and inv.env["DISABLE_TELEMETRY"] == "0"
    assert inv.env["HOME"] == "/srv/dev" and inv.user == "dev" and inv.timeout == 60
    assert inv.transcript.path == f"/srv/dev/.claude/projects/-w/{SID}.jsonl"


def test_shell_command_is_one_safe_line():
    spec = TurnSpec(prompt="it's $(rm -rf /) `x`", workdir="/home/agent/my repo", session_id=SID)
    inv = agents.get().invocation(spec)
    line = inv.shell_command(become=True)
    assert line.startswith("cd '/home/agent/my repo' && exec runuser -u agent -- env -i ")
    assert "</dev/null" not in line, "a steerable agent reads its messages from the caller"
    words = shlex.split(line.split(" && exec ", 1)[1])
    assert words[:5] == ["runuser", "-u", "agent", "--", "env"] and words[-2:] == ["--session-id", SID]
    assert "rm -rf" not in line, "the prompt travels on stdin, not in the command line"
    assert "runuser" not in inv.shell_command()


def test_steering_and_interrupt_lines():
    agent = agents.get()
    steer = json.loads(agent.steer_line("also update the docs"))
    assert steer["type"] == "user" and steer["message"]["content"][0]["text"] == "also update the docs"
    stop = json.loads(agent.interrupt_line())
    assert stop["type"] == "control_request" and stop["request"] == {"subtype": "interrupt"} and stop["request_id"]


def test_the_result_line_ends_the_turn_and_control_answers_are_quiet():
    parser = agents.get().parser(TurnSpec(prompt="x", workdir="/w", session_id=SID))
    assert parser.parse('{"type":"control_response","response":{"subtype":"success","request_id":"r"}}') == []
    assert not parser.turn_over
    parser.parse('{"type":"result","subtype":"error_during_execution","is_error":true,"session_id":"' + SID + '"}')
    assert parser.turn_over


@pytest.mark.parametrize("prompt", ["", "   \n", "x" * 200_000])
def test_prompts_that_cannot_be_sent(prompt):
    with pytest.raises(ApplianceError):
        agents.get().invocation(TurnSpec(prompt=prompt, workdir="/w"))


def test_resume_ids_must_be_path_safe():
    with pytest.raises(ValueError):
        agents.get().invocation(TurnSpec(prompt="x", workdir="/w", resume="../../x"))


# ---------------------------------------------------------------- parsing recorded output


def test_read_edit_bash_turn():
    events, result = replay("claude_tools")
    assert [type(e).__name__ for e in events] == [
        "Log", "Log", "Status", "Message", "ToolUse", "ToolResult", "ToolUse", "ToolResult", "ToolUse", "ToolResult",
        "Message"]
    hook, hook_out, status = events[:3]
    assert hook == Log(text="SessionStart:startup: success (exit 0)", stream="hook")
    assert hook_out.text == "session-start hook: remote=true"
    assert status.text.startswith("Claude Code 2.1.197 started: model ")
    uses = [e for e in events if isinstance(e, ToolUse)]
    assert [(u.name, u.summary) for u in uses] == [
        ("Read", "hello.txt"), ("Edit", "hello.txt"), ("Bash", "grep -c appliance hello.txt && echo ran-in-$(basename $PWD)")]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(r.id, r.ok, r.name) for r in results] == [(u.id, True, u.name) for u in uses]
    assert "hello world" in results[0].output and "ran-in-repo" in results[2].output
    assert result.ok and result.exit_code == 0 and result.summary == "Changed the greeting."
    assert result.session_id == status.text.rsplit(" ", 1)[1]
    assert result.cost_usd > 0 and result.usage["output_tokens"] > 0 and result.num_turns == 4


def test_resumed_turn_keeps_the_session_id():
    events, result = replay("claude_resume")
    _, first = replay("claude_tools")
    assert events[0].text == "SessionStart:resume: success (exit 0)"
    assert result.ok and result.session_id == first.session_id
    assert [e.text for e in events if isinstance(e, Message)] == ["Nothing else to change."]


def test_tool_error_retry_and_api_failure():
    events, result = replay("claude_errors")
    [res] = [e for e in events if isinstance(e, ToolResult)]
    assert not res.ok and "Read it first" in res.output and res.name == "Edit"
    [retry] = [e for e in events if isinstance(e, Log) and e.level == "warning"]
    assert retry.text.startswith("model API error 500 (server_error); retry 1/1 in ")
    [err] = [e for e in events if isinstance(e, Error)]
    assert err.message.startswith("Authentication error")
    assert not [e for e in events if isinstance(e, Message)]  # the CLI's error text is not the agent speaking
    # the result line says subtype "success" but is_error true: the turn failed
    assert not result.ok and result.exit_code == 1
    assert result.error.startswith("Authentication error") and "401" in result.error


def test_unknown_session():
    events, result = replay("claude_unknown_session")
    assert events == []
    assert not result.ok and result.error == "No conversation found with session ID: 00000000-0000-4000-8000-000000000000"


def test_garbage_never_raises():
    parser = agents.get().parser(TurnSpec(prompt="x", workdir="/w"))
    lines = ["not json", "[1, 2]", "{broken", '{"type": "assistant", "message": "oops"}',
             '{"type": "assistant", "message": {"content": [1, null, {"type": "tool_use"}]}}',
             '{"type": "user", "message": {"content": "plain"}}', '{"type": "mystery"}', '{"type": "system"}',
             '{"type": "result"}', "", "   "]
    out = [e for line in lines for e in parser.parse(line)]
    assert out[0] == Log(text="not json")
    assert all(isinstance(e, (Log, ToolUse)) for e in out)
    result = parser.finish(0, "")
    assert not result.ok  # a result line without subtype "success" is not a success


def test_a_parser_bug_shows_the_line(monkeypatch):
    parser = agents.get().parser(TurnSpec(prompt="x", workdir="/w"))
    monkeypatch.setattr(parser, "_assistant", lambda obj: 1 / 0)
    out = parser.parse('{"type": "assistant"}')
    assert out[0] == Log(text='{"type": "assistant"}', level="warning") and "ZeroDivisionError" in out[1].text


def test_no_result_line():
    parser = agents.get().parser(TurnSpec(prompt="x", workdir="/w", session_id=SID))
    parser.parse('{"type":"assistant","message":{"content":[{"type":"text","text":"half way"}]},"session_id":"' + SID + '"}')
    result = parser.finish(None, "")
    assert not result.ok and result.exit_code is None and "stopped before it finished" in result.error
    assert result.session_id == SID and result.summary == "half way"
    crashed = agents.get().parser(TurnSpec(prompt="x", workdir="/w")).finish(1, "warn: x\nError: boom\nbye\n")
    assert crashed.error == "claude exited with status 1: Error: boom"


def test_success_line_but_failing_exit_is_a_failure():
    parser = agents.get().parser(TurnSpec(prompt="x", workdir="/w"))
    parser.parse('{"type":"result","subtype":"success","is_error":false,"result":"ok"}')
    assert parser.finish(0).ok
    assert not parser.finish(137, "Killed").ok


def test_max_turns():
    parser = agents.get().parser(TurnSpec(prompt="x", workdir="/w"))
    parser.parse('{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":9}')
    result = parser.finish(1)
    assert not result.ok and "maximum number of turns" in result.error and result.num_turns == 9


@pytest.mark.parametrize("name,tool_input,summary", [
    ("Read", {"file_path": "/w/src/a.py"}, "src/a.py"),
    ("Write", {"file_path": "/elsewhere/a.py"}, "/elsewhere/a.py"),
    ("Bash", {"command": "make\nmake test"}, "make…"),
    ("Grep", {"pattern": "TODO", "path": "/w/src"}, "TODO in src"),
    ("WebFetch", {"url": "https://example.com"}, "https://example.com"),
    ("TodoWrite", {"todos": [{}, {}]}, "2 to-do items"),
    ("mcp__x__y", {"b": 1, "a": "z"}, '{"a": "z", "b": 1}'),
    ("Other", {}, ""),
])
def test_tool_summaries(name, tool_input, summary):
    assert tool_summary(name, tool_input, "/w") == summary
