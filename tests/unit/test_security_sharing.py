"""Security review, holes 3 and 11: what sharing a session reveals, and to whom.

Each test is one attack from the review (issue 11) against the real access rules and pages on
SQLite.
"""

from __future__ import annotations

import pytest

from appliance.accounts.models import Team, TeamMember, User
from appliance.errors import NotFound
from appliance.repos.models import Repository
from appliance.sessions.access import session_for, visible_sessions
from appliance.sessions.service import NewSession, SessionService


@pytest.fixture
def world(db, cfg):
    alice = User.create(username="alice")
    bob = User.create(username="bob")  # alice's team mate: may use the team's repository
    eve = User.create(username="eve")  # not in the team: may not use it
    team = Team.create(name="core")
    TeamMember.create(team=team, user=alice)
    TeamMember.create(team=team, user=bob)
    Repository.create(name="acme/secret", url="/srv/git/secret.git", team=team)
    Repository.create(name="acme/open", url="/srv/git/open.git")
    svc = SessionService(cfg, wake=lambda: None)
    return {"alice": alice, "bob": bob, "eve": eve, "svc": svc}


def test_public_session_of_a_restricted_repository_stays_hidden_from_outsiders(world):
    """Hole 3: making a session public used to show a restricted repository's prompt, diff,
    events, comments and egress log to everyone. Public means: everyone who may use the
    repository."""
    svc, alice = world["svc"], world["alice"]
    s = svc.create(alice, NewSession("acme/secret", "rotate the production keys"))
    svc.set_visibility(alice, s.id, "public")
    with pytest.raises(NotFound):
        session_for(world["eve"], s.id)
    assert s.id not in {x.id for x in visible_sessions(world["eve"])}
    assert session_for(world["bob"], s.id).id == s.id  # who may use the repository still sees it
    assert s.id in {x.id for x in visible_sessions(world["bob"])}


def test_public_session_of_an_open_repository_is_public(world):
    svc, alice = world["svc"], world["alice"]
    s = svc.create(alice, NewSession("acme/open", "fix the readme"))
    svc.set_visibility(alice, s.id, "public")
    assert session_for(world["eve"], s.id).id == s.id
    assert s.id in {x.id for x in visible_sessions(world["eve"])}


# --- hole 11: "Hide my name" ----------------------------------------------------------------------

@pytest.fixture
def hidden_owner(db, cfg, tmp_path):
    """alice's public session with her name hidden, one line comment of hers on its diff, and the
    merge request she opened from it on a repository the appliance hosts."""
    from test_console_merge_requests import PASSWORD, Browser, Hosted
    from werkzeug.security import generate_password_hash

    from appliance.forges.local import create_hosted_repository
    from appliance.forges.models import MergeRequest
    from appliance.services import Services
    from appliance.sessions.models import DiffFile, Session, Status, Turn
    from webui import create_app

    users = {n: User.create(username=n, password_hash=generate_password_hash(PASSWORD)) for n in ("alice", "bob")}
    bare = create_hosted_repository(cfg.state_dir, "acme/hosted", {"app.py": "x = 1\n"})
    repo = Repository.create(name="acme/hosted", url=str(bare), forge="local")
    svc = SessionService(cfg, wake=lambda: None)
    s = svc.create(users["alice"], NewSession("acme/hosted", "change x", agent="command"))
    Hosted(bare, tmp_path / "work").push_branch(s.work_branch, {"app.py": "x = 2\n"})
    turn = Turn.get(Turn.session == s)
    DiffFile.create(session=s, turn=turn, path="app.py", change="modified", added=1, removed=1,
                    patch="@@ -1 +1 @@\n-x = 1\n+x = 2\n")
    Session.update(status=Status.IDLE, head_sha="abc").where(Session.id == s.id).execute()
    svc.set_visibility(users["alice"], s.id, "public", hide_owner=True)
    svc.comment(users["alice"], s.id, "app.py", 1, "is 2 right?")
    mr = MergeRequest.create(repository=repo, source_branch=s.work_branch, target_branch="main", title="Change x",
                             body="", author=users["alice"])
    app = create_app(Services.build(cfg, svc), test_config={"TESTING": True})
    return {"session": s, "mr": mr, "as_": lambda who: Browser(app, who)}


def test_hidden_owner_is_not_named_as_comment_author_on_the_diff(hidden_owner):
    s = hidden_owner["session"]
    page = hidden_owner["as_"]("bob").get(f"/sessions/{s.id}/diff").get_data(as_text=True)
    assert "is 2 right?" in page  # the comment is shared, its author's name is not
    assert "alice" not in page
    own = hidden_owner["as_"]("alice").get(f"/sessions/{s.id}/diff").get_data(as_text=True)
    assert "is 2 right?" in own


def test_hidden_owner_is_not_named_as_merge_request_author(hidden_owner):
    mr = hidden_owner["mr"]
    bob = hidden_owner["as_"]("bob")
    for path in ("/repos/acme/hosted/merge_requests", f"/repos/acme/hosted/merge_requests/{mr.id}"):
        page = bob.get(path).get_data(as_text=True)
        assert "Change x" in page and "alice" not in page, path
    own = hidden_owner["as_"]("alice").get(f"/repos/acme/hosted/merge_requests/{mr.id}").get_data(as_text=True)
    assert "alice" in own
