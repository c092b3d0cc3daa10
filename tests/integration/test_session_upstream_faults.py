"""A turn whose upstream is wrong fails before any guest boots, with an error that says what to do."""

from __future__ import annotations

import pytest

from appliance.accounts.models import User
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sandbox.manager import SandboxManager
from appliance.sessions.engine import Engine
from appliance.sessions.models import Event, Session, Status, Turn
from appliance.sessions.service import NewSession

pytest_plugins = ["gitserver"]


class NoGuests(SandboxManager):
    def create(self, *a, **kw):
        raise AssertionError("no guest may boot for this turn")


@pytest.fixture
def engine(cfg, db, tmp_path):
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    mgr = NoGuests(cfg, Hypervisor(f"test://{node}"), egress=object())
    return Engine(cfg, mgr)  # not started: turns are run by hand, one at a time


def run_first_turn(engine, user, repo_name="acme/app", **kw) -> Session:
    s = engine.service.create(user, NewSession(repo_name, "do it", agent="command", command="true", **kw))
    engine.runner.run(Turn.get(Turn.session == s).id)
    return Session.get_by_id(s.id)


def test_a_branch_already_upstream_is_not_touched(engine, git_server):
    git_server.create_repo("acme/app", {"a.txt": "a\n"})
    Repository.create(name="acme/app", url=git_server.url("acme/app"), credential_kind="token",
                      credential_secret=git_server.token)
    user = User.create(username="alice")
    s = engine.service.create(user, NewSession("acme/app", "collide", agent="command", command="true"))
    theirs = git_server.commit("acme/app", s.work_branch, {"theirs.txt": "x\n"}, base="main")
    engine.runner.run(Turn.get(Turn.session == s).id)
    s = Session.get_by_id(s.id)
    assert s.status == Status.FAILED and "already exists" in s.error
    assert git_server.head("acme/app", s.work_branch) == theirs
    assert Sandbox.select().count() == 0
    errors = [e.data for e in Event.select().where((Event.session == s.id) & (Event.kind == "error"))]
    assert errors and errors[0]["hint"]


def test_an_unreachable_remote_fails_before_booting(engine, git_server):
    git_server.create_repo("acme/app", {"a.txt": "a\n"})
    Repository.create(name="acme/app", url=git_server.url("acme/app"), credential_kind="token",
                      credential_secret=git_server.token)
    git_server.stop()  # the port now refuses connections
    s = run_first_turn(engine, User.create(username="alice"))
    assert s.status == Status.FAILED and "unreachable" in s.error.lower()
    assert git_server.token not in s.error
    assert Sandbox.select().count() == 0
    assert Turn.get(Turn.session == s).status == "failed"


def test_a_missing_base_branch(engine, git_server):
    git_server.create_repo("acme/app", {"a.txt": "a\n"})
    Repository.create(name="acme/app", url=git_server.url("acme/app"), credential_kind="token",
                      credential_secret=git_server.token)
    s = run_first_turn(engine, User.create(username="alice"), base_branch="release-9")
    assert s.status == Status.FAILED and "release-9" in s.error and "does not exist" in s.error
    assert Sandbox.select().count() == 0


def test_a_wrong_host_credential(engine, git_server):
    git_server.create_repo("acme/app", {"a.txt": "a\n"})
    Repository.create(name="acme/app", url=git_server.url("acme/app"), credential_kind="token",
                      credential_secret="wrong-token")
    s = run_first_turn(engine, User.create(username="alice"))
    assert s.status == Status.FAILED and "wrong-token" not in s.error
    assert Sandbox.select().count() == 0
