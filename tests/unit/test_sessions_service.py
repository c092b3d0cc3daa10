import pytest

from appliance.accounts.models import Team, TeamMember, User
from appliance.environments.dotenv import DotenvError
from appliance.environments.models import Environment
from appliance.errors import ApplianceError, Forbidden, Invalid, NotFound
from appliance.repos.models import Repository
from appliance.sessions.access import session_for, visible_sessions
from appliance.sessions.models import Comment, DiffFile, Event, Session, Status, Turn
from appliance.sessions.service import NewSession, SessionService, render_comments, slugify


@pytest.fixture
def world(db, cfg):
    alice = User.create(username="alice")
    bob = User.create(username="bob")  # alice's team mate
    eve = User.create(username="eve")  # an outsider
    admin = User.create(username="root", is_admin=True)
    team = Team.create(name="core")
    TeamMember.create(team=team, user=alice)
    TeamMember.create(team=team, user=bob)
    repo = Repository.create(name="acme/api", url="/srv/git/api.git", default_branch="main")
    secret_repo = Repository.create(name="acme/secret", url="/srv/git/secret.git", team=team)
    Environment.create(owner=alice, name="dev", variables="DEBUG=true\n", is_default=True)
    woken = []
    svc = SessionService(cfg, wake=lambda: woken.append(1))
    return dict(alice=alice, bob=bob, eve=eve, admin=admin, repo=repo, secret_repo=secret_repo, svc=svc, woken=woken)


def test_create_queues_the_first_turn(world, cfg):
    s = world["svc"].create(world["alice"], NewSession("acme/api", "Fix the flaky test in auth.spec.ts"))
    assert s.status == Status.QUEUED and s.base_branch == "main"
    assert s.work_branch.startswith(f"{cfg.branch_prefix}/fix-the-flaky-test-in-")
    assert s.environment_snapshot["variables"] == {"DEBUG": "true"}
    assert [t.message for t in s.turns] == ["Fix the flaky test in auth.spec.ts"]
    assert [e.kind for e in Event.select()] == ["status"]
    assert world["woken"] == [1]


def test_base_branch_from_the_prompt(world):
    s = world["svc"].create(world["alice"], NewSession("acme/api", "Work on branch release/2.1 please"))
    assert s.base_branch == "release/2.1"
    s = world["svc"].create(world["alice"], NewSession("acme/api", "Fix it on the branch `hotfix`."))
    assert s.base_branch == "hotfix"


@pytest.mark.parametrize("req,error,needle", [
    (NewSession("nope/nope", "x"), NotFound, "unknown repository"),
    (NewSession("acme/api", "   "), Invalid, "empty"),
    (NewSession("acme/api", "x" * 200_001), Invalid, "characters"),
    (NewSession("acme/api", "x", agent="gpt-eng"), Invalid, "unknown agent"),
    (NewSession("acme/api", "x", environment="prod"), NotFound, "unknown environment"),
    (NewSession("acme/api", "x", base_branch="../../etc"), Invalid, "not a branch name"),
])
def test_bad_requests_create_nothing(world, req, error, needle):
    with pytest.raises(error, match=needle):
        world["svc"].create(world["alice"], req)
    assert Session.select().count() == 0 and Turn.select().count() == 0


def test_malformed_env_is_reported_with_its_line_and_nothing_is_created(world):
    Environment.create(owner=world["alice"], name="broken", variables="OK=1\nnot a line\n")
    with pytest.raises(DotenvError, match="line 2"):
        world["svc"].create(world["alice"], NewSession("acme/api", "x", environment="broken"))
    assert Session.select().count() == 0


def test_missing_model_credential_fails_before_anything(world, cfg):
    def check(agent):
        raise ApplianceError("no model API key for api.anthropic.com", hint="add it to the credentials file")

    with pytest.raises(ApplianceError, match="model API key"):
        SessionService(cfg, credential_check=check).create(world["alice"], NewSession("acme/api", "x"))
    assert Session.select().count() == 0


def test_team_repository_is_invisible_to_outsiders(world):
    with pytest.raises(NotFound):
        world["svc"].create(world["eve"], NewSession("acme/secret", "x"))
    assert world["svc"].create(world["bob"], NewSession("acme/secret", "x")).repository.name == "acme/secret"


def test_visibility_rules(world):
    svc, alice = world["svc"], world["alice"]
    s = svc.create(alice, NewSession("acme/secret", "private work"))
    for who, sees in (("alice", True), ("bob", False), ("eve", False), ("admin", True)):
        assert (session_for(world[who], s.id) is not None) if sees else _hidden(world[who], s.id)
        assert (s.id in {x.id for x in visible_sessions(world[who])}) == sees
    assert _hidden(None, s.id), "anonymous sees nothing"
    svc.set_visibility(alice, s.id, "team")
    assert session_for(world["bob"], s.id).id == s.id
    assert _hidden(world["eve"], s.id)
    assert s.id in {x.id for x in visible_sessions(world["bob"])}
    with pytest.raises(Forbidden):
        svc.message(world["bob"], s.id, "do something else")  # a viewer is not the owner
    svc.set_visibility(alice, s.id, "public")
    assert _hidden(world["eve"], s.id)  # public stays inside the repository's audience
    with pytest.raises(Forbidden):
        svc.set_visibility(world["bob"], s.id, "private")


def _hidden(user, session_id) -> bool:
    with pytest.raises(NotFound):
        session_for(user, session_id)
    return True


def test_follow_up_on_idle_and_steering_while_running(world):
    svc, alice = world["svc"], world["alice"]
    s = svc.create(alice, NewSession("acme/api", "first"))
    steer = svc.message(alice, s.id, "also update the docs")
    assert steer.number == 2 and Session.get_by_id(s.id).status == Status.QUEUED
    assert Event.select().where(Event.kind == "message_queued").count() == 1
    Session.update(status=Status.IDLE).execute()
    follow = svc.message(alice, s.id, "now add tests")
    assert follow.number == 3 and Session.get_by_id(s.id).status == Status.QUEUED


def test_comments_become_one_message_with_context(world):
    svc, alice = world["svc"], world["alice"]
    s = svc.create(alice, NewSession("acme/api", "first"))
    turn = s.turns[0]
    DiffFile.create(session=s, turn=turn, path="src/app.py", change="modified", added=1, removed=1,
                    patch="--- a/src/app.py\n+++ b/src/app.py\n@@ -1,3 +1,3 @@\n import os\n-x = 1\n+x = 2\n print(x)\n")
    with pytest.raises(Invalid, match="not in the session's diff"):
        svc.comment(alice, s.id, "other.py", 1, "hm")
    svc.comment(alice, s.id, "src/app.py", 2, "why 2?")
    svc.comment(alice, s.id, "src/app.py", 3, "use logging")
    Session.update(status=Status.IDLE).execute()
    sent = svc.send_comments(alice, s.id)
    assert sent.source == "comments"
    assert "src/app.py:2\n> x = 2\nwhy 2?" in sent.message
    assert "src/app.py:3\n> print(x)\nuse logging" in sent.message
    assert Comment.select().where(Comment.sent_in.is_null()).count() == 0
    with pytest.raises(Invalid, match="no unsent comments"):
        svc.send_comments(alice, s.id)


def test_cancel_and_then_nothing_more(world):
    svc, alice = world["svc"], world["alice"]
    s = svc.create(alice, NewSession("acme/api", "first"))
    assert svc.cancel(alice, s.id).status == Status.CANCELLED
    assert Turn.get().status == "cancelled"
    with pytest.raises(Invalid):
        svc.message(alice, s.id, "more")
    with pytest.raises(Invalid):
        svc.cancel(alice, s.id)


def test_slugify():
    assert slugify("Fix the *flaky* test in auth.spec.ts!") == "fix-the-flaky-test-in"
    assert slugify("???") == "task"


def test_render_comments_without_patch_context(world):
    s = world["svc"].create(world["alice"], NewSession("acme/api", "x"))
    c = Comment(session=s, author=world["alice"], path="gone.py", line=9, body="?")
    assert render_comments(s, [c]).endswith("gone.py:9\n?")


def test_complete_only_when_idle(world):
    svc, alice = world["svc"], world["alice"]
    s = svc.create(alice, NewSession("acme/api", "first"))
    with pytest.raises(Invalid, match="only an idle or failed session"):
        svc.complete(alice, s.id)
    Session.update(status=Status.IDLE).execute()
    assert svc.complete(alice, s.id).status == Status.COMPLETED
    with pytest.raises(Invalid):
        svc.message(alice, s.id, "more")
