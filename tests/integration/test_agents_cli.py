"""The real agent CLIs, run on the host through the adapters, against the model API stand-ins.

Claude Code and Codex are installed with npm into `<repo>/state/agents/npm` (once; reused) and run
exactly as the adapters say — argv, environment, working directory — except that the user is an
unprivileged uid of this host instead of the guest's `agent` (Claude Code refuses
--dangerously-skip-permissions as root). Their model API is a stand-in on 127.0.0.1 scripted per
test (tests/modelapi.py). Skipped only when npm cannot reach its registry and nothing is cached.

APPLIANCE_RECORD_AGENT_FIXTURES=1 rewrites tests/unit/fixtures/agents/ from these runs (temporary
paths replaced by /tmp/agent-fixture) for the parser unit tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from appliance import agents
from appliance.agents import transcript
from appliance.agents.base import ModelSettings, TurnSpec
from appliance.agents.events import Command, Error, Log, Message, Status, ToolResult, ToolUse, TurnResult

from helpers import ROOT
from modelapi import AnthropicStandIn, ResponsesStandIn, apply_patch, error, shell, text, tool_use

NPM_DIR = ROOT / "state" / "agents" / "npm"
PACKAGES = ("@anthropic-ai/claude-code", "@openai/codex")
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "agents"
RECORD = os.environ.get("APPLIANCE_RECORD_AGENT_FIXTURES") == "1"
FIXTURE_ROOT = "/tmp/agent-fixture"
KEY = "placeholder-from-the-guest"
UID = 65534  # nobody: an unprivileged user every Debian has
RUN_TIMEOUT = 120


# ---------------------------------------------------------------- installing the CLIs


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def claude_binary(prefix: Path) -> Path | None:
    """The native `claude`: bin/claude.exe once the postinstall replaced the stub (it is a small
    script otherwise, e.g. after --ignore-scripts), else the platform package's binary."""
    mods = prefix / "node_modules" / "@anthropic-ai"
    for candidate in [mods / "claude-code" / "bin" / "claude.exe", *sorted(mods.glob("claude-code-linux-*/claude"))]:
        if _is_elf(candidate) and candidate.stat().st_size > 10_000_000:
            return candidate
    return None


def codex_binary(prefix: Path) -> Path | None:
    """The native `codex` from the platform package (bin/codex.js is only a Node launcher)."""
    for candidate in sorted((prefix / "node_modules" / "@openai").glob("codex*/vendor/*/bin/codex")):
        if _is_elf(candidate):
            return candidate
    return None


@pytest.fixture(scope="module")
def clis() -> dict[str, Path]:
    if claude_binary(NPM_DIR) is None or codex_binary(NPM_DIR) is None:
        npm = shutil.which("npm")
        assert npm, "npm is missing: scripts/setup installs nodejs and npm"
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        p = subprocess.run([npm, "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund", *PACKAGES],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            unreachable = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ENETUNREACH", "network")
            if any(word in p.stderr for word in unreachable):
                pytest.skip(f"npm cannot reach its registry: {p.stderr.strip().splitlines()[-1:]}")
            pytest.fail(f"npm install failed:\n{p.stderr[-2000:]}")
    found = {"claude": claude_binary(NPM_DIR), "codex": codex_binary(NPM_DIR)}
    assert all(found.values()), f"npm installed no native binaries: {found}"
    return found  # type: ignore[return-value]


# ---------------------------------------------------------------- a place the unprivileged user owns


class Box:
    """A temporary root (0755, owned by UID when we are root) with homes and checkouts in it."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="agents-cli-", dir="/tmp"))
        os.chmod(self.root, 0o755)

    def dir(self, *parts: str) -> Path:
        d = self.root.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def checkout(self, *parts: str, files: dict[str, str]) -> Path:
        repo = self.dir(*parts)
        for name, content in files.items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(content)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "start")
        return repo

    def give_away(self) -> None:
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{UID}:{UID}", str(self.root)], check=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def git(repo: Path, *args: str) -> str:
    p = subprocess.run(["git", "-c", "safe.directory=*", "-c", "user.name=Test", "-c", "user.email=test@example.com",
                        "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return p.stdout


@pytest.fixture
def box():
    b = Box()
    yield b
    b.cleanup()


# ---------------------------------------------------------------- running a turn


class Turn:
    def __init__(self, spec: TurnSpec, invocation, proc: subprocess.CompletedProcess, events: list, result: TurnResult):
        self.spec, self.invocation, self.proc, self.events, self.result = spec, invocation, proc, events, result

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]


def run_turn(agent, spec: TurnSpec, box: Box, record: str = "") -> Turn:
    """Run the adapter's invocation as the unprivileged user; parse stdout like the engine would."""
    inv = agent.invocation(spec)
    assert inv.cwd == spec.workdir and inv.user == spec.user
    become = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"] if os.geteuid() == 0 else []
    # a steerable agent reads its message on stdin; here stdin ends after it (the turn's only message)
    stdin = {"input": inv.stdin.decode()} if inv.steerable else {"stdin": subprocess.DEVNULL}
    proc = subprocess.run([*become, *inv.argv], cwd=inv.cwd, env=dict(inv.env), **stdin,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    parser = agent.parser(spec)
    events = [e for line in proc.stdout.splitlines() for e in parser.parse(line)]
    closing = parser.finish_events(proc.returncode, proc.stderr[-4000:])
    events += closing
    for e in events:  # every event survives the trip through JSON
        assert type(e).from_dict(json.loads(json.dumps(e.to_dict()))) == e
    if record and RECORD:
        _record(record, proc, spec, str(box.root))
    return Turn(spec, inv, proc, events, closing[-1])


def _record(name: str, proc: subprocess.CompletedProcess, spec: TurnSpec, root: str) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.jsonl").write_text(proc.stdout.replace(root, FIXTURE_ROOT))
    meta = {"exit_code": proc.returncode, "stderr_tail": proc.stderr[-2000:].replace(root, FIXTURE_ROOT),
            "workdir": spec.workdir.replace(root, FIXTURE_ROOT)}
    (FIXTURES / f"{name}.meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def claude_spec(api: AnthropicStandIn, repo: Path, home: Path, prompt: str, **kw) -> TurnSpec:
    return TurnSpec(prompt=prompt, workdir=str(repo), home=str(home), user="nobody",
                    model=ModelSettings(base_url=api.base_url, api_key=KEY),
                    env={"CLAUDE_CODE_MAX_RETRIES": "0"}, **kw)


HOOK_SETTINGS = json.dumps({"hooks": {"SessionStart": [{"matcher": "", "hooks": [
    {"type": "command", "command": "echo \"session-start hook: remote=$CLAUDE_CODE_REMOTE\""}]}]}})


# ---------------------------------------------------------------- Claude Code


def test_claude_code_reads_edits_runs_and_resumes(clis, box):
    repo = box.checkout("repo", files={"hello.txt": "hello world\n", ".claude/settings.json": HOOK_SETTINGS})
    home = box.dir("home")
    box.give_away()
    target = str(repo / "hello.txt")
    agent = agents.get("claude-code", executable=str(clis["claude"]))
    with AnthropicStandIn([
        tool_use("Read", {"file_path": target}, text="Let me look at the file."),
        tool_use("Edit", {"file_path": target, "old_string": "hello world", "new_string": "hello appliance"}),
        tool_use("Bash", {"command": "grep -c appliance hello.txt && echo ran-in-$(basename $PWD)", "description": "check"}),
        text("Changed the greeting."),
    ]) as api:
        one = run_turn(agent, claude_spec(api, repo, home, "Make hello.txt greet the appliance"), box, record="claude_tools")

        assert one.result.ok, (one.result, one.proc.stderr[-2000:])
        assert (repo / "hello.txt").read_text() == "hello appliance\n"
        assert "+hello appliance" in git(repo, "diff")
        uses = one.of(ToolUse)
        assert [u.name for u in uses] == ["Read", "Edit", "Bash"]
        assert uses[0].summary == "hello.txt" and uses[2].summary.startswith("grep -c appliance")
        results = {r.id: r for r in one.of(ToolResult)}
        assert all(results[u.id].ok for u in uses), results
        assert "hello world" in results[uses[0].id].output and results[uses[0].id].name == "Read"
        assert "ran-in-repo" in results[uses[2].id].output
        assert [m.text for m in one.of(Message)] == ["Let me look at the file.", "Changed the greeting."]
        assert any("session-start hook: remote=true" in e.text for e in one.of(Log) if e.stream == "hook")
        assert one.of(Status)[0].text.startswith("Claude Code ")
        assert one.result.session_id == one.invocation.session_id and one.result.summary == "Changed the greeting."
        assert one.result.cost_usd is not None and one.result.usage
        # the model API saw only the placeholder key, on every request, and what Read returned
        posts = [r for r in api.requests if r.method == "POST"]
        assert posts and {r.api_key for r in posts} == {KEY}
        assert "hello world" in api.agent_requests[1].tool_results()[0].content
        assert not api.remaining
        transcript_file = Path(one.invocation.transcript.path)
        assert transcript_file.is_file(), sorted(str(p) for p in (home / ".claude").rglob("*.jsonl"))

        api.script(text("Nothing else to change."))
        two = run_turn(agent, claude_spec(api, repo, home, "Anything else?", resume=one.result.session_id), box,
                       record="claude_resume")
        assert two.result.ok and two.result.session_id == one.result.session_id
        last = api.agent_requests[-1]
        assert last.user_texts()[-1] == "Anything else?"
        assert "Make hello.txt greet the appliance" in last.user_texts()
        assert any(b.get("type") == "tool_use" and b.get("name") == "Edit"
                   for m in last.messages if m.get("role") == "assistant" for b in m.get("content", []))


def test_claude_code_transcript_moves_to_a_new_checkout_path(clis, box):
    """Teleport / a fresh guest: the transcript installed under the new path's project dir name
    lets --resume continue there. The new path is over 200 characters, so the CLI's own name for
    it (checked on a fresh session first) exercises the hash rule."""
    old_repo = box.checkout("old", files={"notes.txt": "one\n"})
    long_parts = ["a-rather-long-directory-name-" + "x" * 40 + f"-{i}" for i in range(4)]
    new_repo = box.checkout("new", *long_parts, "repo", files={"notes.txt": "one\n"})
    old_home, new_home = box.dir("home-old"), box.dir("home-new")
    box.give_away()
    assert len(str(new_repo)) > transcript.MAX_DIR_LEN
    agent = agents.get("claude-code", executable=str(clis["claude"]))
    with AnthropicStandIn([text("fresh")]) as api:
        fresh = run_turn(agent, claude_spec(api, new_repo, new_home, "start"), box)
        assert fresh.result.ok, fresh.proc.stderr[-2000:]
        projects = new_home / ".claude" / "projects"
        assert [p.name for p in projects.iterdir()] == [transcript.project_dir_name(str(new_repo))]
        assert Path(fresh.invocation.transcript.path).is_file()

        api.script(text("first words"))
        first = run_turn(agent, claude_spec(api, old_repo, old_home, "Remember the word pelican"), box)
        assert first.result.ok
        sid = first.result.session_id
        uid = (UID, UID) if os.geteuid() == 0 else None
        installed = transcript.install(Path(first.invocation.transcript.path), transcript.config_dir(str(new_home)),
                                       str(new_repo), sid, owner=uid)
        assert installed.parent.name == transcript.project_dir_name(str(new_repo))

        api.script(text("pelican"))
        moved = run_turn(agent, claude_spec(api, new_repo, new_home, "Which word?", resume=sid), box)
        assert moved.result.summary == "pelican"
        assert moved.result.ok, moved.proc.stderr[-2000:]
        seen = api.agent_requests[-1]
        assert seen.user_texts()[-1] == "Which word?" and "Remember the word pelican" in seen.user_texts()
        assert {"type": "text", "text": "first words"} in [b for m in seen.messages if m.get("role") == "assistant"
                                                           for b in m.get("content", [])]


def test_claude_code_failures_are_turn_errors(clis, box):
    repo = box.checkout("repo", files={"hello.txt": "hello\n"})
    home = box.dir("home")
    box.give_away()
    agent = agents.get("claude-code", executable=str(clis["claude"]))
    target = str(repo / "hello.txt")
    with AnthropicStandIn([
        tool_use("Edit", {"file_path": target, "old_string": "hello", "new_string": "bye"}),  # not Read first
        error(500, "overloaded for a moment"),  # retried once (CLAUDE_CODE_MAX_RETRIES=1)
        error(401, "invalid x-api-key"),
    ]) as api:
        spec = claude_spec(api, repo, home, "Edit without reading")
        spec = dataclasses.replace(spec, env={"CLAUDE_CODE_MAX_RETRIES": "1"})
        turn = run_turn(agent, spec, box, record="claude_errors")
        assert (repo / "hello.txt").read_text() == "hello\n"
        [res] = turn.of(ToolResult)
        assert not res.ok and "Read it first" in res.output
        assert any("retry 1/1" in e.text for e in turn.of(Log))
        assert turn.of(Error) and not turn.result.ok and turn.result.exit_code != 0
        assert "401" in turn.result.error or "api-key" in turn.result.error.lower() or "auth" in turn.result.error.lower()

        gone = run_turn(agent, claude_spec(api, repo, home, "again", resume="00000000-0000-4000-8000-000000000000"), box,
                        record="claude_unknown_session")
        assert not gone.result.ok and gone.result.error


# ---------------------------------------------------------------- Codex


def codex_spec(api: ResponsesStandIn, repo: Path, home: Path, prompt: str, **kw) -> TurnSpec:
    # gpt-5.5: a model Codex knows that is offered plain function tools (exec_command, apply_patch);
    # its default model wraps every tool in a JavaScript "code mode" tool the stand-in does not script.
    return TurnSpec(prompt=prompt, workdir=str(repo), home=str(home), user="nobody",
                    model=ModelSettings(base_url=api.base_url, api_key=KEY, model="gpt-5.5"), **kw)


def test_codex_runs_edits_and_resumes(clis, box):
    repo = box.checkout("repo", files={"hello.txt": "hello world\n"})
    home, other_home = box.dir("home"), box.dir("home-fresh")
    box.give_away()
    agent = agents.get("codex", executable=str(clis["codex"]))
    patch = "*** Begin Patch\n*** Update File: hello.txt\n@@\n-hello world\n+hello codex\n*** End Patch\n"
    with ResponsesStandIn([
        shell("cat hello.txt", text="Reading it."),
        apply_patch(patch),
        shell("grep -q codex hello.txt && exit 3"),
        text("Patched."),
    ]) as api:
        one = run_turn(agent, codex_spec(api, repo, home, "Make hello.txt greet codex"), box, record="codex_tools")
        assert one.result.ok, (one.result, one.proc.stderr[-2000:])
        assert (repo / "hello.txt").read_text() == "hello codex\n"
        commands = one.of(Command)
        assert [(c.command, c.exit_code) for c in commands] == [("cat hello.txt", 0), ("grep -q codex hello.txt && exit 3", 3)]
        assert "hello world" in commands[0].output
        assert [u.name for u in one.of(ToolUse)] == ["shell", "apply_patch", "shell"]
        [patched] = one.of(ToolResult)
        assert patched.ok and patched.output == "update hello.txt"
        assert one.result.session_id and one.result.usage
        assert {r.api_key for r in api.requests} == {KEY}
        assert "hello world" in api.agent_requests[1].function_outputs()[0].content

        # the next turn, in a fresh CODEX_HOME holding only the rollout (as in a new guest)
        [rollout] = (home / ".codex" / "sessions").rglob(f"rollout-*-{one.result.session_id}.jsonl")
        assert one.invocation.transcript.pattern.format(session_id=one.result.session_id).endswith(
            f"rollout-*-{one.result.session_id}.jsonl")
        transcript.install_codex(rollout, other_home / ".codex", owner=(UID, UID) if os.geteuid() == 0 else None)
        api.script(text("Still codex."))
        two = run_turn(agent, codex_spec(api, repo, other_home, "Anything else?", resume=one.result.session_id), box,
                       record="codex_resume")
        assert two.result.ok and two.result.session_id == one.result.session_id
        texts = api.agent_requests[-1].input_texts()
        assert texts[-1] == "Anything else?" and "Make hello.txt greet codex" in texts


def test_codex_failures_are_turn_errors(clis, box):
    repo = box.checkout("repo", files={"a.txt": "a\n"})
    home = box.dir("home")
    box.give_away()
    agent = agents.get("codex", executable=str(clis["codex"]),
                       provider_options={"request_max_retries": 0, "stream_max_retries": 0})
    with ResponsesStandIn([error(401, "invalid api key")]) as api:
        turn = run_turn(agent, codex_spec(api, repo, home, "fail"), box, record="codex_http_error")
        assert not turn.result.ok and "401" in turn.result.error and turn.of(Error)
        gone = run_turn(agent, codex_spec(api, repo, home, "again", resume="00000000-0000-0000-0000-000000000000"), box,
                        record="codex_unknown_session")
        assert not gone.result.ok and "no rollout found" in gone.result.error


# ---------------------------------------------------------------- command


def test_command_agent_through_its_shell_line(box):
    """The `command` adapter's one-line form (what goes over SSH), with runuser as root."""
    repo = box.checkout("repo", files={"a.txt": "a\n"})
    box.give_away()
    agent = agents.get("command")
    spec = TurnSpec(prompt="it's a 'quoted' message", workdir=str(repo), user="nobody", home=str(box.root),
                    command='printf "%s\\n" "$APPLIANCE_PROMPT" > out.txt; echo "user=$(id -u) home=$HOME"; echo oops >&2; exit 3')
    inv = agent.invocation(spec)
    become = os.geteuid() == 0
    proc = subprocess.run(["sh", "-c", inv.shell_command(become=become)], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SECRET_OF_THE_LOGIN": "must-not-leak"})
    parser = agent.parser(spec)
    events = [e for line in proc.stdout.splitlines() for e in parser.parse(line)]
    events += parser.finish_events(proc.returncode, proc.stderr)
    assert (repo / "out.txt").read_text() == "it's a 'quoted' message\n"
    expected_uid = UID if become else os.getuid()
    assert events[0] == Log(text=f"user={expected_uid} home={box.root}")
    assert events[-2] == Command(command=spec.command, exit_code=3)
    assert isinstance(events[-1], TurnResult) and not events[-1].ok and "oops" in events[-1].error
    leak = subprocess.run(["sh", "-c", agents.get("command").invocation(
        TurnSpec(prompt="", workdir=str(repo), user="nobody", command="env")).shell_command(become=become)],
        capture_output=True, text=True, timeout=30, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SECRET_OF_THE_LOGIN": "x"})
    assert "SECRET_OF_THE_LOGIN" not in leak.stdout and "APPLIANCE_PROMPT=" in leak.stdout
