"""The codex adapter: command line, environment, and its parser on output recorded from the real
CLI (tests/unit/fixtures/agents/codex_*.jsonl)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from appliance import agents
from appliance.agents.base import PLACEHOLDER_KEY, ModelSettings, TurnSpec
from appliance.agents.codex import unwrap_shell
from appliance.agents.events import Command, Error, Log, Message, Status, ToolResult, ToolUse

FIXTURES = Path(__file__).parent / "fixtures" / "agents"


def replay(name: str, resume: str | None = None):
    meta = json.loads((FIXTURES / f"{name}.meta.json").read_text())
    parser = agents.get("codex").parser(TurnSpec(prompt="x", workdir=meta["workdir"], resume=resume))
    events = [e for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines() for e in parser.parse(line)]
    return events, parser.finish(meta["exit_code"], meta["stderr_tail"])


def test_command_line_and_environment():
    inv = agents.get("codex").invocation(TurnSpec(prompt="fix it", workdir="/home/agent/repo"))
    argv = list(inv.argv)
    assert argv[:5] == ["codex", "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox"]
    assert argv[-2:] == ["--", "fix it"] and "resume" not in argv and "-m" not in argv
    configs = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert "model_provider=appliance" in configs and "analytics.enabled=false" in configs
    [provider] = [c for c in configs if c.startswith("model_providers.")]
    table = tomllib.loads(provider.replace("model_providers.appliance=", "t=", 1))["t"]
    assert table == {"name": "appliance", "base_url": "https://api.openai.com/v1", "env_key": "OPENAI_API_KEY",
                     "wire_api": "responses"}
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--disable"] == ["plugins", "remote_plugin"]
    assert inv.env["OPENAI_API_KEY"] == PLACEHOLDER_KEY and inv.env["HOME"] == "/home/agent"
    assert "CODEX_HOME" not in inv.env  # Codex refuses a CODEX_HOME that does not exist yet; ~/.codex it creates
    assert inv.session_id is None
    assert inv.transcript.pattern == "/home/agent/.codex/sessions/*/*/*/rollout-*-{session_id}.jsonl"


def test_resume_model_and_provider_options():
    spec = TurnSpec(prompt="again", workdir="/w", resume="01a2", env={"HTTPS_PROXY": "http://p:3128"},
                    model=ModelSettings(base_url='http://127.0.0.1:9/v1"x', model="gpt-5.5", api_key_env="K", api_key="ph"))
    inv = agents.get("codex", executable="/opt/codex", provider_options={"request_max_retries": 0, "x": True}).invocation(spec)
    assert inv.argv[0] == "/opt/codex"
    assert list(inv.argv[-6:]) == ["-m", "gpt-5.5", "resume", "01a2", "--", "again"]
    provider = [a for a in inv.argv if a.startswith("model_providers.")][0]
    table = tomllib.loads(provider.replace("model_providers.appliance=", "t=", 1))["t"]
    assert table["base_url"] == 'http://127.0.0.1:9/v1"x' and table["env_key"] == "K"
    assert table["request_max_retries"] == 0 and table["x"] is True
    assert inv.env["K"] == "ph" and "OPENAI_API_KEY" not in inv.env and inv.env["HTTPS_PROXY"] == "http://p:3128"
    assert inv.session_id == "01a2"


def test_shell_exec_patch_turn():
    events, result = replay("codex_tools")
    assert [type(e).__name__ for e in events] == [
        "Status", "Message", "ToolUse", "Command", "ToolUse", "ToolResult", "ToolUse", "Command", "Message"]
    assert events[0] == Status(text=f"Codex started: thread {result.session_id}")
    cmds = [e for e in events if isinstance(e, Command)]
    assert [(c.command, c.exit_code) for c in cmds] == [("cat hello.txt", 0), ("grep -q codex hello.txt && exit 3", 3)]
    assert cmds[0].output == "hello world\n"
    uses = [e for e in events if isinstance(e, ToolUse)]
    assert [(u.name, u.summary) for u in uses] == [
        ("shell", "cat hello.txt"), ("apply_patch", "update hello.txt"), ("shell", "grep -q codex hello.txt && exit 3")]
    assert [c.id for c in cmds] == [uses[0].id, uses[2].id]
    [patch] = [e for e in events if isinstance(e, ToolResult)]
    assert patch.ok and patch.id == uses[1].id
    assert result.ok and result.summary == "Patched." and result.usage["output_tokens"] == 40 and result.cost_usd is None


def test_resume_and_failures():
    _, first = replay("codex_tools")
    events, result = replay("codex_resume", resume=first.session_id)
    assert result.ok and result.session_id == first.session_id
    assert [e.text for e in events if isinstance(e, Message)] == ["Still codex."]

    events, result = replay("codex_http_error")
    assert [type(e) for e in events] == [Status, Error]  # turn.failed repeats the error: shown once
    assert not result.ok and result.error.startswith("unexpected status 401 Unauthorized") and result.exit_code == 1

    events, result = replay("codex_unknown_session", resume="00000000-0000-0000-0000-000000000000")
    assert events == [] and not result.ok
    assert "no rollout found for thread id" in result.error and result.session_id == "00000000-0000-0000-0000-000000000000"


def test_other_items_and_garbage():
    parser = agents.get("codex").parser(TurnSpec(prompt="x", workdir="/w"))
    lines = [
        '{"type":"item.completed","item":{"id":"i0","type":"error","message":"Model metadata for `m` not found."}}',
        '{"type":"error","message":"Reconnecting... 1/5"}',
        '{"type":"item.completed","item":{"id":"i1","type":"reasoning","text":"thinking"}}',
        '{"type":"item.completed","item":{"id":"i2","type":"todo_list","items":[{"text":"a","completed":true},{"text":"b","completed":false}]}}',
        '{"type":"item.started","item":{"id":"i3","type":"mcp_tool_call","server":"s","tool":"t","arguments":{"q":1},"status":"in_progress"}}',
        '{"type":"item.completed","item":{"id":"i3","type":"mcp_tool_call","server":"s","tool":"t","error":{"message":"nope"},"status":"failed"}}',
        '{"type":"item.completed","item":{"id":"i4","type":"future_thing"}}',
        '{"type":"item.updated","item":{"id":"i2","type":"todo_list","items":[]}}',
        "plain text", "{not json", '{"type":"item.completed","item":"x"}', '{"type":"turn.completed"}',
    ]
    out = [e for line in lines for e in parser.parse(line)]
    assert out[0] == Log(text="Model metadata for `m` not found.", stream="agent", level="warning")
    assert out[1] == Error(message="Reconnecting... 1/5")
    assert out[2].level == "debug" and out[3].text == "[x] a\n[ ] b"
    assert out[4] == ToolUse(id="i3", name="s.t", summary='{"q": 1}')
    assert out[5] == ToolResult(id="i3", ok=False, output="nope", name="s.t")
    assert Log(text="plain text") in out
    result = parser.finish(0)
    assert result.ok and result.usage is None


def test_unwrap_shell():
    assert unwrap_shell("/usr/bin/bash -lc 'cat x'") == "cat x"
    assert unwrap_shell("bash -c 'a && b'") == "a && b"
    assert unwrap_shell("python3 -c 'print(1)'") == "python3 -c 'print(1)'"
    assert unwrap_shell("echo 'unterminated") == "echo 'unterminated"
