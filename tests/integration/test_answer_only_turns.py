"""A question is not a task: a turn that changed no file pushes nothing, the session offers no pull
request and says why (engine, API 409, the CLI's client); a later turn that changes files pushes.

The runner's commit-and-push and diff steps run for real: real git in a checkout made through the
real git proxy, pushing to a real upstream (git http-backend), real SQLite. The guest's shell is a
local bash in that checkout (booting a guest is the vm tests' job: see test_session_engine.py).
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

pytest.register_assert_rewrite("gitserver")
pytest_plugins = ["gitserver"]

from appliance.accounts.models import ApiToken, User  # noqa: E402
from appliance.errors import Conflict  # noqa: E402
from appliance.gitproxy import GitProxyService, tokens  # noqa: E402
from appliance.gitproxy.mirror import MirrorStore  # noqa: E402
from appliance.gitproxy.server import GitProxy  # noqa: E402
from appliance.models import Sandbox, SandboxState  # noqa: E402
from appliance.repos.models import Repository  # noqa: E402
from appliance.sandbox.guest_ssh import ExecResult  # noqa: E402
from appliance.sandbox.hypervisor import Hypervisor  # noqa: E402
from appliance.sandbox.manager import SandboxManager  # noqa: E402
from appliance.services import Services  # noqa: E402
from appliance.sessions import answers  # noqa: E402
from appliance.sessions.engine import Engine  # noqa: E402
from appliance.sessions.models import DiffFile, Event, Session, Status, Turn  # noqa: E402
from appliance.sessions.pushes import record_push  # noqa: E402
from appliance.sessions.runner import repo_spec  # noqa: E402
from webui import create_app  # noqa: E402

from gitserver import clean_git_env, run_git  # noqa: E402

REPO = "acme/api"
BRANCH = "appliance/answer-1"


class LocalShell:
    """The guest's shell for the runner's git steps: bash on this host, with a clean git setup."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def exec(self, command: str, stdin: bytes | None = None, on_stdout=None, on_stderr=None,
             timeout: float = 60) -> ExecResult:
        p = subprocess.run(["bash", "-c", command], input=stdin or b"", capture_output=True, env=self.env,
                           timeout=timeout, check=False)
        for sink, data in ((on_stdout, p.stdout), (on_stderr, p.stderr)):
            if sink and data:
                sink(data)
        return ExecResult(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def world(tmp_path, git_server, db, cfg):
    git_server.create_repo(REPO, {"app.py": "print('hi')\n"})
    repo = Repository.create(name=REPO, url=git_server.url(REPO), credential_kind="token",
                             credential_secret=git_server.token, forge="local")
    proxy = GitProxyService(GitProxy(MirrorStore.from_config(cfg), {REPO: repo_spec(repo)}.get,
                                     on_push=record_push), "127.0.0.1", 0).start()
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    engine = Engine(cfg, SandboxManager(cfg, Hypervisor(f"test://{node}"), egress=object()))  # not started
    owner = User.create(username="alice")
    sb = Sandbox.create(profile="minimal", image_dir="-", vcpus=1, memory_mb=512, disk_gb=4, address="127.0.0.1",
                        purpose="ses-ans", state=SandboxState.RUNNING)
    engine.runner.mirrors.refresh(repo_spec(repo))
    session = Session.create(id="ses-ans", owner=owner, repository=repo, base_branch="main", work_branch=BRANCH,
                             status=Status.RUNNING, sandbox_id=sb.id, title="What does app.py do?",
                             base_sha=engine.runner.mirrors.head(REPO, "main"))  # as the runner's checkout sets it
    token = tokens.issue(session.id, REPO, BRANCH, sandbox_id=sb.id)
    home = tmp_path / "home"
    home.mkdir()
    env = clean_git_env(home)
    work = tmp_path / "work"
    run_git(["clone", "-q", proxy.remote_url(token, REPO), str(work)], env=env)
    run_git(["checkout", "-q", "-B", BRANCH, "origin/main"], cwd=work, env=env)
    try:
        yield {"engine": engine, "session": session, "work": work, "shell": LocalShell(env),
               "upstream": git_server, "owner": owner, "cfg": cfg}
    finally:
        proxy.stop()


def run_turn(world, number: int, change: dict[str, str] | None = None) -> Turn:
    """Turn `number`: the agent's work (files written, or none), then the runner's push and diff."""
    session, work = world["session"], Path(world["work"])
    for path, text in (change or {}).items():
        (work / path).write_text(text)
    turn = Turn.create(session=session, number=number, message=f"turn {number}", status="running")
    runner = world["engine"].runner
    commit = runner._commit_and_push(world["shell"], session, str(work), turn)
    runner._diff(session, turn)
    Turn.update(status="completed", commit_sha=commit).where(Turn.id == turn.id).execute()
    Session.update(status=Status.IDLE).where(Session.id == session.id).execute()
    return Turn.get_by_id(turn.id)


def test_an_answer_pushes_nothing_and_a_later_change_pushes(world):
    upstream, session = world["upstream"], world["session"]
    first = run_turn(world, 1)
    assert first.commit_sha is None
    assert upstream.head(REPO, BRANCH) is None  # no empty work branch upstream
    s = Session.get_by_id(session.id)
    assert s.head_sha is None and DiffFile.select().where(DiffFile.session == s).count() == 0
    said = [e.data.get("text", "") for e in Event.select().where(Event.session == s.id)]
    assert "no file changes in this turn: nothing pushed" in said
    assert answers.answer_only_turns(s) == {1}

    second = run_turn(world, 2, {"app.py": "print('hello')\n"})
    s = Session.get_by_id(session.id)
    assert second.commit_sha == s.head_sha == upstream.head(REPO, BRANCH)
    assert [f.path for f in DiffFile.select().where(DiffFile.turn == second.id)] == ["app.py"]

    third = run_turn(world, 3)  # another question: the branch stays where it is
    assert third.commit_sha == second.commit_sha == upstream.head(REPO, BRANCH)
    assert answers.answer_only_turns(Session.get_by_id(session.id)) == {1, 3}
    assert answers.pull_request_blocker(Session.get_by_id(session.id)) is None


def test_a_session_that_only_answered_refuses_a_pull_request_with_the_reason(world):
    run_turn(world, 1)
    engine, session = world["engine"], world["session"]
    with pytest.raises(Conflict, match="changed no files") as refused:
        engine.service.create_pull_request(world["owner"], session.id)
    assert refused.value.hint
    # the API says it with 409, the message and the hint (the CLI's `appliance pr` prints both)
    app = create_app(Services.build(world["cfg"], engine.service))
    token = ApiToken.issue(world["owner"])
    r = app.test_client().post(f"/api/v1/sessions/{session.id}/pr", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 409
    assert "changed no files" in r.json["error"] and "follow-up" in r.json["hint"]
    assert Session.get_by_id(session.id).pr_url is None


def test_the_cli_says_why(world, tmp_path, monkeypatch, capsys):
    """`appliance pr` against the real API over HTTP: non-zero exit, the reason and the hint."""
    from werkzeug.serving import make_server

    from appliance.cli.main import main
    from appliance.client import Login, save_login

    run_turn(world, 1)
    engine, session = world["engine"], world["session"]
    app = create_app(Services.build(world["cfg"], engine.service))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        login = tmp_path / "client.json"
        save_login(Login(f"http://127.0.0.1:{server.server_port}", ApiToken.issue(world["owner"])), login)
        monkeypatch.setenv("APPLIANCE_CLIENT_CONFIG", str(login))
        code = main(["pr", session.id])
    finally:
        server.shutdown()
        thread.join()
    err = capsys.readouterr().err
    assert code != 0
    assert "error: the session changed no files" in err and "hint: ask for a change in a follow-up" in err
