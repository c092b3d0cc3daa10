"""Auto-fix end to end without a guest: a signed GitHub webhook says a check failed → the session
queues a turn → the runner's real commit-and-push sends the fix through the real git proxy to a real
upstream (the pull request's branch moves) → a review comment queues the next turn → after its push
the appliance replies on the review thread, which the GitHub REST stand-in sees.

The guest's shell is a local bash in a checkout made through the git proxy, as in
test_answer_only_turns.py (booting guests is the vm tests' job). The forge's REST API is the
stand-in of tests/unit/test_forges_remote.py (checks method, path, headers and the exact JSON).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("gitserver")
pytest_plugins = ["gitserver"]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from test_answer_only_turns import LocalShell  # noqa: E402
from test_forges_remote import Expect, StandIn  # noqa: E402

from appliance.accounts.models import User  # noqa: E402
from appliance.gitproxy import GitProxyService, tokens  # noqa: E402
from appliance.gitproxy.mirror import MirrorStore  # noqa: E402
from appliance.gitproxy.server import GitProxy  # noqa: E402
from appliance.models import Sandbox, SandboxState  # noqa: E402
from appliance.prloop import poller  # noqa: E402
from appliance.prloop.apply import REPLY_MARK  # noqa: E402
from appliance.prloop.hooks import webhook_path, webhook_secret  # noqa: E402
from appliance.prloop.models import ForgeLogin  # noqa: E402
from appliance.repos.models import Repository  # noqa: E402
from appliance.sandbox.hypervisor import Hypervisor  # noqa: E402
from appliance.sandbox.manager import SandboxManager  # noqa: E402
from appliance.services import Services  # noqa: E402
from appliance.sessions.engine import Engine  # noqa: E402
from appliance.sessions.models import Session, Status, Turn  # noqa: E402
from appliance.sessions.pushes import record_push  # noqa: E402
from appliance.sessions.runner import repo_spec  # noqa: E402
from webui import create_app  # noqa: E402

from gitserver import clean_git_env, run_git  # noqa: E402

REPO = "acme/api"
BRANCH = "appliance/fix-login-1"


@pytest.fixture
def world(tmp_path, git_server, db, cfg, monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    rest = StandIn()
    git_server.create_repo(REPO, {"login.py": "def login(pw):\n    return True\n"})
    repo = Repository.create(name=REPO, url=git_server.url(REPO), credential_kind="token",
                             credential_secret=git_server.token, forge="github", forge_project="acme/api",
                             forge_api_url=rest.url + "/api/v3")
    proxy = GitProxyService(GitProxy(MirrorStore.from_config(cfg), {REPO: repo_spec(repo)}.get,
                                     on_push=record_push), "127.0.0.1", 0).start()
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    engine = Engine(cfg, SandboxManager(cfg, Hypervisor(f"test://{node}"), egress=object()))  # not started
    owner = User.create(username="alice")
    ForgeLogin.create(user=owner, forge="github", login="alice-gh")
    sb = Sandbox.create(profile="minimal", image_dir="-", vcpus=1, memory_mb=512, disk_gb=4, address="127.0.0.1",
                        purpose="ses-fix", state=SandboxState.RUNNING)
    engine.runner.mirrors.refresh(repo_spec(repo))
    session = Session.create(id="ses-fix", owner=owner, repository=repo, base_branch="main", work_branch=BRANCH,
                             status=Status.RUNNING, sandbox_id=sb.id, title="Reject empty passwords",
                             base_sha=engine.runner.mirrors.head(REPO, "main"))
    token = tokens.issue(session.id, REPO, BRANCH, sandbox_id=sb.id)
    home = tmp_path / "home"
    home.mkdir()
    env = clean_git_env(home)
    work = tmp_path / "work"
    run_git(["clone", "-q", proxy.remote_url(token, REPO), str(work)], env=env)
    run_git(["checkout", "-q", "-B", BRANCH, "origin/main"], cwd=work, env=env)
    app = create_app(Services.build(cfg, engine.service))
    try:
        yield dict(engine=engine, session=session, work=work, shell=LocalShell(env), upstream=git_server, repo=repo,
                   rest=rest, client=app.test_client(), cfg=cfg)
    finally:
        proxy.stop()
        rest.stop()


def run_turn(world, turn: Turn, change: dict[str, str]) -> Turn:
    """The queued turn runs: the agent's edit, then the runner's real commit, push and diff."""
    session, work = Session.get_by_id(world["session"].id), Path(world["work"])
    Turn.update(status="running").where(Turn.id == turn.id).execute()
    for path, text in change.items():
        (work / path).write_text(text)
    runner = world["engine"].runner
    commit = runner._commit_and_push(world["shell"], session, str(work), turn)
    runner._diff(session, turn)
    Turn.update(status="completed", commit_sha=commit).where(Turn.id == turn.id).execute()
    Session.update(status=Status.IDLE).where(Session.id == session.id).execute()
    return Turn.get_by_id(turn.id)


def deliver(world, event: str, payload: dict, delivery: str):
    body = json.dumps(payload).encode()
    sig = hmac.new(webhook_secret(world["repo"]).encode(), body, hashlib.sha256).hexdigest()
    return world["client"].post(webhook_path(world["repo"]), data=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={sig}"})


def test_a_failed_check_and_a_review_comment_are_fixed_pushed_and_answered(world):
    session, upstream = world["session"], world["upstream"]
    first = Turn.create(session=session, number=1, message="Reject empty passwords", status="queued")
    run_turn(world, first, {"login.py": "def login(pw):\n    return pw != ''\n"})
    Session.update(pr_url="https://github.example/acme/api/pull/7", pr_number=7, pr_state="open",
                   autofix=True).where(Session.id == session.id).execute()
    pr = {"number": 7, "head": {"ref": BRANCH, "sha": upstream.head(REPO, BRANCH)}, "base": {"ref": "main"}}

    # CI fails: a turn is queued with the check's name and log
    r = deliver(world, "check_run", {"action": "completed", "check_run": {
        "id": 1, "name": "tests", "head_sha": upstream.head(REPO, BRANCH), "status": "completed",
        "conclusion": "failure", "output": {"title": "1 failed", "summary": "",
                                            "text": "test_login_none: TypeError: None != ''"},
        "check_suite": {"head_branch": BRANCH}, "pull_requests": [pr]}, "sender": {"login": "ci[bot]"}}, "d-1")
    assert r.json["done"] == ["queued turn 2"]
    second = Turn.get((Turn.session == session.id) & (Turn.number == 2))
    assert "tests" in second.message and "TypeError: None != ''" in second.message
    fixed = run_turn(world, second, {"login.py": "def login(pw):\n    return bool(pw)\n"})
    assert fixed.commit_sha == upstream.head(REPO, BRANCH)  # the pull request's branch has the fix

    # a reviewer asks for more: the next turn, then the reply on the thread
    r = deliver(world, "pull_request_review_comment", {"action": "created", "comment": {
        "id": 101, "path": "login.py", "line": 2, "body": "Strip whitespace first.", "user": {"login": "alice-gh"}},
        "pull_request": pr, "sender": {"login": "alice-gh"}}, "d-2")
    assert r.json["done"] == ["queued turn 3"]
    third = Turn.get((Turn.session == session.id) & (Turn.number == 3))
    assert "login.py:2" in third.message and "Strip whitespace first." in third.message
    done = run_turn(world, third, {"login.py": "def login(pw):\n    return bool((pw or '').strip())\n"})
    assert done.commit_sha == upstream.head(REPO, BRANCH)

    sha = done.commit_sha
    world["rest"].expect(Expect("POST", "/api/v3/repos/acme/api/pulls/7/comments/101/replies", (201, {"id": 102}),
                                headers={"Authorization": f"Bearer {upstream.token}"}, json={"body": (
        f"{REPLY_MARK}\n**appliance:** addressed in {sha[:12]}, pushed to {BRANCH} (the branch now differs from "
        f"main by +1 −1 in 1 files). http://{world['cfg'].listen_host}:{world['cfg'].listen_port}/sessions/ses-fix")}))
    assert poller.send_replies(world["engine"].service) == ["101"]
    world["rest"].check()
    assert poller.send_replies(world["engine"].service) == []  # once

