"""The session engine end to end: real guests, a real upstream (git http-backend on loopback), the
git proxy, the egress policy, the command agent. From a task to a pushed branch and its diff."""

from __future__ import annotations

import re
import time

import pytest

from appliance.accounts.models import User
from appliance.environments.models import Environment
from appliance.models import Sandbox, SandboxState
from appliance.repos.models import Repository
from appliance.sessions.models import DiffFile, Event, Session, Status, Turn
from appliance.sessions.service import NewSession

from appliance_world import appliance_world, remove, state_dir
from gitserver import GitServer, run_git

pytestmark = [pytest.mark.vm, pytest.mark.root]

HOOKS = """{"hooks": {"SessionStart": [{"matcher": "startup", "hooks": [
  {"type": "command", "command": "echo \\"export FROM_HOOK=hook-$CLAUDE_CODE_REMOTE\\" >> \\"$CLAUDE_ENV_FILE\\"; echo hook ran in $CLAUDE_PROJECT_DIR"}
]}]}}"""

FILES = {
    "app.py": "def add(a, b):\n    return a - b\n",
    "test_app.py": "from app import add\nassert add(2, 3) == 5, 'add is broken'\nprint('TESTS-OK')\n",
    ".claude/settings.json": HOOKS,
    ".gitignore": "__pycache__/\n",
}


class World:
    def __init__(self, cfg, engine, upstream, user, mgr):
        self.cfg, self.engine, self.upstream, self.user, self.mgr = cfg, engine, upstream, user, mgr

    def start(self, prompt: str, command: str | None = None, **kw) -> Session:
        return self.engine.service.create(self.user, NewSession("acme/app", prompt, agent="command",
                                                                command=command, **kw))

    def wait(self, session_id: str, *statuses: str, timeout: float = 300) -> Session:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = Session.get_by_id(session_id)
            if s.status in statuses and session_id not in self.engine.running_sessions():
                return s
            time.sleep(0.5)
        events = [(e.kind, e.data) for e in Event.select().where(Event.session == session_id)]
        raise AssertionError(f"{session_id} stayed {Session.get_by_id(session_id).status}: {events[-15:]}")

    def texts(self, session_id: str, kind: str = "log") -> list[str]:
        return [e.data.get("text", "") for e in Event.select().where((Event.session == session_id) & (Event.kind == kind))]

    def guest(self, session: Session):
        return self.mgr.ssh(Sandbox.get_by_id(Session.get_by_id(session.id).sandbox_id))


@pytest.fixture(scope="module")
def world(hv):
    state = state_dir("sessions")
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/app", FILES)
    try:
        with appliance_world(hv, state, bridge="apltest3", subnet="10.218.0.0/24", tap_prefix="apls",
                             egress_table="applsess", max_running_sessions=2, idle_guest_timeout=3600.0,
                             memory_mb=768) as w:
            w.engine.start()
            user = User.create(username="alice")
            Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                              credential_secret=upstream.token, credential_username="x-access-token")
            Environment.create(owner=user, name="dev", variables="GREETING='hello from .env'\n", is_default=True)
            yield World(w.cfg, w.engine, upstream, user, w.sandboxes)
    finally:
        upstream.close()
        remove(state)


@pytest.fixture(scope="module")
def fixed(world):
    """One session: the command agent fixes the bug and runs the repository's tests."""
    s = world.start("Fix add() and run the tests",
                    command="sed -i 's/return a - b/return a + b/' app.py && python3 test_app.py && "
                            "echo \"env: $GREETING / $FROM_HOOK\"")
    return world.wait(s.id, Status.IDLE)


def test_the_branch_is_pushed_with_the_fix_and_the_trailer(world, fixed):
    up = world.upstream
    assert up.head("acme/app", fixed.work_branch) == fixed.head_sha
    assert "return a + b" in up.read_file("acme/app", fixed.work_branch, "app.py")
    message = run_git(["--git-dir", str(up.path("acme/app")), "log", "-1", "--format=%B", fixed.head_sha],
                      env=up.env).stdout
    assert f"Session: {fixed.id}" in message
    assert "TESTS-OK" in world.texts(fixed.id)


def test_the_diff_is_computed_and_stored(world, fixed):
    assert (fixed.diff_added, fixed.diff_removed) == (1, 1)
    files = list(DiffFile.select().where(DiffFile.session == fixed.id))
    assert [(f.path, f.change, f.added, f.removed) for f in files] == [("app.py", "modified", 1, 1)]
    assert "-    return a - b" in files[0].patch and "+    return a + b" in files[0].patch
    assert any(e.kind == "diff_stat" for e in Event.select().where(Event.session == fixed.id))


def test_env_variables_and_the_session_start_hook_reach_the_agent(world, fixed):
    texts = world.texts(fixed.id)
    assert "env: hello from .env / hook-true" in texts, texts
    assert any(t.startswith("hook ran in /home/agent/work/app") for t in texts)


def test_pushing_anything_but_the_work_branch_is_refused(world, fixed):
    main_before = world.upstream.head("acme/app", "main")
    with world.guest(fixed) as guest:
        r = guest.exec("cd ~/work/app && git push origin HEAD:main 2>&1; git push origin HEAD:refs/heads/other 2>&1;"
                       f" git push origin :{fixed.work_branch} 2>&1")
    assert "rejected" in r.text and fixed.work_branch in r.text
    assert world.upstream.head("acme/app", "main") == main_before
    assert "other" not in world.upstream.branches("acme/app")
    assert world.upstream.head("acme/app", fixed.work_branch) == fixed.head_sha, "no deletes"


def test_the_host_credential_is_nowhere_in_the_guest(world, fixed):
    secret = world.upstream.token
    with world.guest(fixed) as guest:
        # the pattern goes in a file under /dev (skipped by the search) so that no command line holds it
        guest.upload(secret.encode() + b"\n", "/dev/shm/needle", mode=0o600)
        r = guest.exec("sudo grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -f /dev/shm/needle / "
                       "2>/dev/null; sudo sh -c 'cat /proc/*/environ /proc/*/cmdline' 2>/dev/null | tr '\\0' '\\n' "
                       "| grep -c -f /dev/shm/needle; cat ~/work/app/.git/config; rm /dev/shm/needle")
    lines = r.text.strip().splitlines()
    assert lines[0] == "0", r.text  # no file, no process environment or argument holds it
    assert secret not in r.text
    # the remote is the git proxy with no credential in it; git reads the session's scoped token
    # from a credential-store file (issue 11, hole 1: `git remote -v` must not print it)
    assert re.search(r"url = http://[0-9.]+:[0-9]+/acme/app\.git", r.text), r.text
    assert "agt_" not in r.text and "http://git:" not in r.text
    assert "helper = store --file=/home/agent/.appliance/git-credentials" in r.text


def test_follow_up_runs_in_the_live_guest(world, fixed):
    sandbox_before = Session.get_by_id(fixed.id).sandbox_id
    world.engine.service.message(world.user, fixed.id, "echo 'more notes' > notes.txt")
    s = world.wait(fixed.id, Status.IDLE)
    assert s.sandbox_id == sandbox_before
    assert world.upstream.read_file("acme/app", s.work_branch, "notes.txt") == "more notes\n"
    assert [t.status for t in Turn.select().where(Turn.session == s).order_by(Turn.number)] == ["completed"] * 2
    assert (s.diff_added, s.diff_removed) == (2, 1)


def test_follow_up_after_the_guest_expired_gets_a_fresh_guest_from_the_branch(world, fixed):
    Session.update(updated_at=Session.updated_at - 10**6).where(Session.id == fixed.id).execute()  # long idle
    old = Session.get_by_id(fixed.id).sandbox_id
    assert fixed.id in world.engine.expire_idle()
    assert Session.get_by_id(fixed.id).sandbox_id is None
    assert Sandbox.get_by_id(old).state == SandboxState.DESTROYED
    world.engine.service.message(world.user, fixed.id, "cat notes.txt && grep -c 'a + b' app.py")
    s = world.wait(fixed.id, Status.IDLE)
    assert s.sandbox_id not in (None, old)
    assert "more notes" in world.texts(fixed.id)


def test_line_comments_become_the_next_turn(world, fixed):
    world.engine.service.comment(world.user, fixed.id, "app.py", 2, "please keep a docstring")
    turn = world.engine.service.send_comments(world.user, fixed.id)
    assert "app.py:2\n>     return a + b\nplease keep a docstring" in turn.message
    world.wait(fixed.id, Status.IDLE, Status.FAILED)  # the command agent runs the message as a command
    assert Turn.get_by_id(turn.id).status in ("completed", "failed")


def test_cancel_during_a_run_leaves_nothing(world, hv):
    s = world.start("wait a while", command="sleep 600")
    deadline = time.monotonic() + 300
    while Session.get_by_id(s.id).status != Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
    assert Session.get_by_id(s.id).status == Status.RUNNING
    sandbox = Sandbox.get_by_id(Session.get_by_id(s.id).sandbox_id)
    world.engine.service.cancel(world.user, s.id)
    world.wait(s.id, Status.CANCELLED, timeout=120)
    deadline = time.monotonic() + 60
    while Sandbox.get_by_id(sandbox.id).live and time.monotonic() < deadline:
        time.sleep(0.5)
    assert Sandbox.get_by_id(sandbox.id).state == SandboxState.DESTROYED
    assert not hv.exists(sandbox.domain_name)
    assert Turn.get(Turn.session == s.id).status == "cancelled"


def test_cancel_while_queued_never_boots(world):
    s = world.start("never runs", command="true")
    world.engine.service.cancel(world.user, s.id)  # races the dispatcher: either way nothing may be left
    world.wait(s.id, Status.CANCELLED, timeout=120)
    assert Sandbox.select().where((Sandbox.session_id == s.id) & Sandbox.state.in_(SandboxState.LIVE)).count() == 0


def test_an_answer_only_turn_pushes_nothing_and_a_later_change_pushes(world):
    """A question is not a task: the first turn changes no file, so no branch appears upstream and
    no pull request is offered; the follow-up that writes a file pushes the branch."""
    from appliance.errors import Conflict
    from appliance.sessions.answers import answer_only_turns

    s = world.start("What does add() do?", command="grep -n 'return' app.py")
    s = world.wait(s.id, Status.IDLE)
    assert s.head_sha is None and world.upstream.head("acme/app", s.work_branch) is None
    assert "no file changes in this turn: nothing pushed" in world.texts(s.id)
    with pytest.raises(Conflict, match="changed no files"):
        world.engine.service.create_pull_request(world.user, s.id)
    world.engine.service.message(world.user, s.id, "echo 'answered' > ANSWER.md")
    s = world.wait(s.id, Status.IDLE)
    assert s.head_sha and world.upstream.head("acme/app", s.work_branch) == s.head_sha
    assert world.upstream.read_file("acme/app", s.work_branch, "ANSWER.md") == "answered\n"
    assert answer_only_turns(s) == {1}
