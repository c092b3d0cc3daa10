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
    return dict(alice=alice, bob=bob, eve=eve, svc=svc)


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
