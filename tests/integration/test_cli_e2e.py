"""The engineer's CLI end to end against the real app on loopback: login → remote → tasks → logs →
diff → message → share → teleport (each of the four checks refusing, changing nothing; then the
happy path) → cancel. No guest: the test writes the engine's rows (events, diff, the stored
transcript) itself and pushes the session's work branch to a local bare "origin"."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from appliance.accounts.models import ApiToken, User
from appliance.agents import transcript
from appliance.cli import remote_cmd
from appliance.errors import ApplianceError
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import DiffFile, Session, Status, Turn, TurnStatus
from appliance.sessions.service import SessionService
from appliance.sessions.stream import emit
from appliance.sessions.transcripts import store as store_transcript
from webui import create_app

from helpers import StandInForge


def git(cwd, *args) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@e", GIT_CONFIG_GLOBAL="/dev/null")
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def cli(*argv) -> tuple[int, str, str]:
    """Run `appliance ARGV` in-process, the way appliance/cli/main.py does."""
    parser = argparse.ArgumentParser(prog="appliance")
    sub = parser.add_subparsers(dest="command", required=True)
    remote_cmd.register(sub)
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        rc = args.handler(args, None) or 0
    except ApplianceError as e:
        print(f"error: {e.message}", file=err)
        if e.hint:
            print(f"hint: {e.hint}", file=err)
        rc = e.exit_code
    finally:
        sys.stdout, sys.stderr = old
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def world(db, cfg, tmp_path, monkeypatch):
    alice = User.create(username="alice")
    bob = User.create(username="bob")
    tokens = {"alice": ApiToken.issue(alice), "bob": ApiToken.issue(bob)}
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(origin))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "--quiet", str(origin), str(seed))
    (seed / "app.py").write_text("print('hi')\n")
    git(seed, "add", ".")
    git(seed, "commit", "--quiet", "-m", "init")
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    Repository.create(name="acme/api", url=str(origin))

    forge = StandInForge()
    app = create_app(Services.build(cfg, sessions=SessionService(cfg, forge_for=forge)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("APPLIANCE_CLIENT_CONFIG", str(tmp_path / "client.json"))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    for k, v in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                 "GIT_COMMITTER_EMAIL": "t@e", "GIT_CONFIG_GLOBAL": "/dev/null"}.items():
        monkeypatch.setenv(k, v)
    yield dict(url=url, tokens=tokens, origin=origin, seed=seed, tmp=tmp_path, cfg=cfg, forge=forge)
    server.shutdown()
    thread.join(5)


def login(world, monkeypatch, who="alice"):
    monkeypatch.setattr(sys, "stdin", io.StringIO(world["tokens"][who] + "\n"))
    rc, out, err = cli("login", world["url"], "--token-stdin")
    assert rc == 0, err
    assert f"as {who}" in out


def clone(world, name) -> Path:
    path = world["tmp"] / name
    git(world["tmp"], "clone", "--quiet", str(world["origin"]), str(path))
    return path


def state(path: Path) -> tuple:
    """What teleport must not change when it refuses."""
    return (git(path, "rev-parse", "--abbrev-ref", "HEAD"), git(path, "status", "--porcelain"),
            git(path, "stash", "list"), git(path, "branch", "--list"))


def test_login_stores_a_0600_file_and_refuses_a_bad_token(world, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("apl_wrong\n"))
    rc, _, err = cli("login", world["url"], "--token-stdin")
    assert rc == 1 and "refused the token" in err and "hint:" in err
    assert not (world["tmp"] / "client.json").exists()
    login(world, monkeypatch)
    st = (world["tmp"] / "client.json").stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert json.loads((world["tmp"] / "client.json").read_text())["server"] == world["url"]


def test_commands_without_login_say_so(world):
    rc, _, err = cli("tasks")
    assert rc == 1 and "not logged in" in err and "appliance login" in err


def test_the_whole_workflow(world, monkeypatch, cfg):
    login(world, monkeypatch)
    laptop = clone(world, "laptop")
    monkeypatch.chdir(laptop)

    # an unpushed branch is refused, with the push command as the hint
    git(laptop, "checkout", "--quiet", "-b", "feature")
    rc, _, err = cli("remote", "Fix the bug")
    assert rc == 1 and "not on origin" in err and "git push -u origin feature" in err
    git(laptop, "checkout", "--quiet", "main")

    # --with-context: the local conversation goes in front of the prompt
    conv = Path(os.environ["CLAUDE_CONFIG_DIR"]) / "projects" / transcript.project_dir_name(str(laptop.resolve()))
    conv.mkdir(parents=True)
    (conv / "local.jsonl").write_text("\n".join(json.dumps(e) for e in [
        {"type": "user", "message": {"role": "user", "content": "Plan: the login bug is in auth.py"}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "text", "text": "Agreed, check the token expiry."},
            {"type": "tool_use", "name": "Read", "input": {"file_path": "/secret"}}]}},
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "content": "the local file's SECRET content"}]}},
    ]) + "\n")
    rc, out, err = cli("remote", "Fix the bug", "--with-context")
    assert rc == 0, err
    sid = out.strip()
    assert f"{world['url']}/sessions/{sid}" in err
    session = Session.get_by_id(sid)
    first = Turn.get((Turn.session == sid) & (Turn.number == 1)).message
    assert "Plan: the login bug is in auth.py" in first and "check the token expiry" in first
    assert "[tool Read: /secret]" in first and "SECRET content" not in first  # the call, not its result
    assert first.endswith("Fix the bug")
    assert session.base_branch == "main"

    rc, out, _ = cli("tasks", "--json")
    assert rc == 0 and [s["id"] for s in json.loads(out)] == [sid]
    rc, out, _ = cli("tasks")
    assert sid in out and "queued" in out

    # what the engine would write: events, a pushed branch, a diff, the transcript
    emit(sid, "message", {"text": "I fixed the expiry check"})
    Session.update(status=Status.IDLE, diff_added=1, diff_removed=1, agent_session_id=str(uuid.uuid4())).where(
        Session.id == sid).execute()
    emit(sid, "status", {"status": Status.IDLE})
    session = Session.get_by_id(sid)
    DiffFile.create(session=sid, turn=Turn.get(Turn.session == sid), path="app.py", change="modified",
                    added=1, removed=1, patch="--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-print('hi')\n+print('bye')\n")
    git(world["seed"], "checkout", "--quiet", "-b", session.work_branch)
    (world["seed"] / "app.py").write_text("print('bye')\n")
    git(world["seed"], "commit", "--quiet", "-am", "fix")
    git(world["seed"], "push", "--quiet", "origin", session.work_branch)
    head = subprocess.run(["git", "-C", str(world["seed"]), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    Session.update(head_sha=head).where(Session.id == sid).execute()
    Turn.update(status=TurnStatus.COMPLETED, commit_sha=head).where(  # the turn that pushed it and made the diff
        (Turn.session == sid) & (Turn.number == 1)).execute()
    conversation = b'{"type":"user","message":{"role":"user","content":"Fix the bug"}}\n'
    store_transcript(cfg.state_dir, sid, conversation)

    rc, out, _ = cli("logs", sid)
    assert "I fixed the expiry check" in out and "· idle" in out
    rc, out, _ = cli("logs", "-f", sid)  # idle and nothing new: follows to the end, then stops
    assert rc == 0 and "I fixed the expiry check" in out
    rc, out, err = cli("diff", sid)
    assert "+print('bye')" in out and "+1 -1" in err
    rc, out, _ = cli("message", sid, "also add a test")
    assert rc == 0 and "turn 2" in out
    Session.update(status=Status.IDLE).where(Session.id == sid).execute()
    rc, out, _ = cli("pr", sid, "--title", "Add the parser", "--autofix")
    assert out.strip() == "http://forge.invalid/pr/1"
    assert world["forge"].requests[-1]["title"] == "Add the parser" and Session.get_by_id(sid).autofix is True

    # -- teleport: each failing check says why and changes nothing --------------------------------
    def refused(path, sid_, *needles):
        before = state(path)
        monkeypatch.chdir(path)
        rc, out, err = cli("teleport", sid_)
        assert rc == 1, (out, err)
        for needle in needles:
            assert needle in err, err
        assert "nothing was changed" in err
        assert state(path) == before
        assert not list(Path(os.environ["CLAUDE_CONFIG_DIR"]).glob(f"projects/*{path.name}*/*-*-*.jsonl"))

    dirty = clone(world, "dirty")
    (dirty / "app.py").write_text("local edit\n")
    refused(dirty, sid, "uncommitted changes", "stash")

    fork_origin = world["tmp"] / "fork.git"
    git(world["tmp"], "clone", "--quiet", "--bare", str(world["origin"]), str(fork_origin))
    fork = world["tmp"] / "fork"
    git(world["tmp"], "clone", "--quiet", str(fork_origin), str(fork))
    refused(fork, sid, "is not the session's repository", "fork")

    monkeypatch.chdir(laptop)
    rc, out, _ = cli("remote", "Another task")
    unpushed = out.strip()
    refused(clone(world, "early"), unpushed, "is not on origin yet")

    rc, _, _ = cli("share", sid, "--visibility", "public")
    assert rc == 0
    login(world, monkeypatch, "bob")
    refused(clone(world, "bobs"), sid, "belongs to another account")
    login(world, monkeypatch, "alice")

    # -- the happy path: --stash, branch checked out, transcript where `claude --resume` looks ----
    happy = clone(world, "happy")
    (happy / "app.py").write_text("local edit\n")
    monkeypatch.chdir(happy)
    rc, out, err = cli("teleport", sid, "--stash")
    assert rc == 0, err
    assert git(happy, "rev-parse", "--abbrev-ref", "HEAD") == session.work_branch
    assert (happy / "app.py").read_text() == "print('bye')\n"
    assert "appliance teleport" in git(happy, "stash", "list")
    agent_id = Session.get_by_id(sid).agent_session_id
    installed = transcript.transcript_path(os.environ["CLAUDE_CONFIG_DIR"], str(happy.resolve()), agent_id)
    assert Path(installed).read_bytes() == conversation
    assert f"claude --resume {agent_id}" in err

    rc, out, _ = cli("cancel", unpushed)
    assert rc == 0 and "cancelled" in out


def test_errors_are_one_line_with_a_hint(world, monkeypatch):
    login(world, monkeypatch)
    rc, _, err = cli("logs", "ses-nothere")
    assert rc == 2 and err.startswith("error: no session ses-nothere") and "hint:" in err
    monkeypatch.chdir(world["tmp"])
    rc, _, err = cli("remote", "x")
    assert rc == 1 and "not inside a git checkout" in err
    rc, _, err = cli("env", "default", "nope")
    assert rc == 1 and "no environment named" in err


def test_env_list_and_default_pick_what_remote_uses(world, monkeypatch):
    login(world, monkeypatch)
    from appliance.client import Client, load_login

    client = Client(load_login())
    client.post("/environments", {"name": "first"})
    client.post("/environments", {"name": "wide", "network_level": "full"})
    rc, out, _ = cli("env", "list")
    assert rc == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["*", "wide"]
    rc, out, _ = cli("env", "default", "wide")
    assert rc == 0 and "default environment: wide" in out
    rc, out, _ = cli("env", "list", "--json")
    assert {e["name"]: e["is_default"] for e in json.loads(out)} == {"first": False, "wide": True}
    monkeypatch.chdir(clone(world, "envs"))
    rc, out, err = cli("remote", "Use the default env")
    assert rc == 0 and "env wide" in err
    rc, out, err = cli("remote", "Named env", "--env", "first", "--agent", "codex")
    assert rc == 0 and "env first" in err
    assert Session.get_by_id(out.strip()).agent == "codex"


class PtyCli:
    """`appliance ARGV` as its own process on a pseudo-terminal, the way a person runs it."""

    def __init__(self, cwd: Path, *argv: str):
        import pty

        self.master, replica = pty.openpty()
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", *argv], cwd=cwd, env=env,
                                     stdin=replica, stdout=replica, stderr=replica, close_fds=True)
        os.close(replica)
        self.seen = ""

    def wait_for(self, needle: str, deadline: float = 60) -> None:
        import select

        end = time.monotonic() + deadline
        while needle not in self.seen:
            left = end - time.monotonic()
            assert left > 0, f"{needle!r} never appeared in:\n{self.seen}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the process ended and closed the terminal
                    chunk = b""
                if not chunk:
                    assert needle in self.seen, f"{needle!r} never appeared in:\n{self.seen}"
                self.seen += chunk.decode(errors="replace")

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self) -> int:
        rc = self.proc.wait(60)
        try:
            while chunk := os.read(self.master, 65536):
                self.seen += chunk.decode(errors="replace")
        except OSError:
            pass
        os.close(self.master)
        return rc


def test_tasks_on_a_terminal_picks_a_row_and_teleports_to_it(world, monkeypatch):
    login(world, monkeypatch)
    laptop = clone(world, "laptop")
    monkeypatch.chdir(laptop)
    target = cli("remote", "Fix the bug")[1].strip()
    session = Session.get_by_id(target)
    git(world["seed"], "checkout", "--quiet", "-b", session.work_branch)
    (world["seed"] / "app.py").write_text("print('bye')\n")
    git(world["seed"], "commit", "--quiet", "-am", "fix")
    git(world["seed"], "push", "--quiet", "origin", session.work_branch)
    head = git(world["seed"], "rev-parse", "HEAD")
    Session.update(status=Status.IDLE, head_sha=head, agent_session_id=str(uuid.uuid4())).where(
        Session.id == target).execute()
    Turn.update(status=TurnStatus.COMPLETED, commit_sha=head).where(Turn.session == target).execute()
    store_transcript(world["cfg"].state_dir, target, b'{"type":"user","message":{"role":"user","content":"x"}}\n')
    newer = cli("remote", "Another task")[1].strip()  # listed first (newest first), not pushed
    rc, out, _ = cli("tasks")  # not a terminal: the plain table, as before
    assert rc == 0 and out.splitlines()[0].startswith("ID") and "\033" not in out and "teleport" not in out

    here = clone(world, "here")
    before = state(here)
    quitting = PtyCli(here, "tasks")
    quitting.wait_for(f"> {newer}")
    quitting.press(b"q")
    assert quitting.finish() == 0 and state(here) == before

    picking = PtyCli(here, "tasks")
    picking.wait_for(f"> {newer}")
    picking.press(b"\x1b[B")  # down: the older session
    picking.wait_for(f"> {target}")
    picking.press(b"t")
    assert picking.finish() == 0, picking.seen
    assert f"teleporting to {target}" in picking.seen
    assert git(here, "rev-parse", "--abbrev-ref", "HEAD") == session.work_branch
    assert (here / "app.py").read_text() == "print('bye')\n"
    assert f"claude --resume {Session.get_by_id(target).agent_session_id}" in picking.seen


def test_remote_attempts_starts_a_group_and_names_the_compare_page(world, monkeypatch):
    login(world, monkeypatch)
    monkeypatch.chdir(clone(world, "laptop"))
    rc, out, err = cli("remote", "Make it faster", "--attempts", "3")
    assert rc == 0, err
    ids = out.split()
    assert len(ids) == 3 and all(i.startswith("ses-") for i in ids)
    groups = {Session.get_by_id(i).group_id for i in ids}
    assert len(groups) == 1 and f"{world['url']}/groups/{groups.pop()}" in err
    rc, _, err = cli("remote", "Make it faster", "--attempts", "5")
    assert rc == 2 and "from 1 to 4" in err and Session.select().count() == 3
