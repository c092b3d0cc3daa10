"""Environments shared with a team and deleted: the owner shares with a team of theirs, its members
use it (API, console, new sessions) but cannot change or delete it (403); anyone else cannot see it
(404); anonymous callers get 401 or the sign-in page. Deleting is refused while a running session
uses it, with the sessions named; sessions keep the environment they started with."""

from __future__ import annotations

import pytest
from test_console_pages import world  # noqa: F401 - the console's world fixture (alice and bob share team core)

from appliance.environments.models import Environment
from appliance.sessions.models import Session, Status
from appliance.sessions.service import NewSession

from helpers import api_caller


def api(world, who):  # noqa: F811
    return api_caller(world["app"], world["users"][who] if who else None)


def shared_env(world) -> int:  # noqa: F811
    r = api(world, "alice")("post", "/environments", json={"name": "py", "network_level": "none", "team": "core"})
    assert r.status_code == 201 and r.json["team"] == "core" and r.json["owner"] == "alice", r.json
    return r.json["id"]


def test_team_members_see_and_use_a_shared_environment(world):  # noqa: F811
    env_id = shared_env(world)
    bob = api(world, "bob")
    assert [(e["name"], e["owner"]) for e in bob("get", "/environments").json["environments"]] == [("py", "alice")]
    assert api(world, "eve")("get", "/environments").json["environments"] == []
    # bob starts a session with it, by name and by id
    for ref in ("py", env_id):
        r = bob("post", "/sessions", json={"repository": "acme/api", "prompt": "Fix", "environment": ref})
        assert r.status_code == 201 and r.json["environment"] == "py", r.json
    r = api(world, "eve")("post", "/sessions", json={"repository": "acme/api", "prompt": "Fix", "environment": env_id})
    assert r.status_code == 404
    # bob's own environment of the same name wins over the shared one
    bob("post", "/environments", json={"name": "py", "network_level": "full"})
    session = world["service"].create(world["users"]["bob"], NewSession("acme/api", "Fix", environment="py"))
    assert session.environment_snapshot["network_level"] == "full"
    # the console lists it as shared, and offers it on the new-session form
    browser = world["as_"]("bob")
    assert "shared by alice with core" in browser.get("/environments").get_data(as_text=True)
    assert "(shared by alice)" in browser.get("/sessions/new").get_data(as_text=True)


def test_only_the_owner_changes_or_deletes_a_shared_environment(world):  # noqa: F811
    env_id = shared_env(world)
    assert api(world, "bob")("patch", f"/environments/{env_id}", json={"network_level": "full"}).status_code == 403
    assert api(world, "bob")("delete", f"/environments/{env_id}").status_code == 403
    assert api(world, "eve")("patch", f"/environments/{env_id}", json={"network_level": "full"}).status_code == 404
    assert api(world, "eve")("delete", f"/environments/{env_id}").status_code == 404
    assert api(world, None)("delete", f"/environments/{env_id}").status_code == 401
    assert world["as_"]("bob").get(f"/environments/{env_id}").status_code == 403
    assert world["as_"]("bob").post(f"/environments/{env_id}/delete").status_code == 403
    assert world["as_"]("eve").post(f"/environments/{env_id}/delete").status_code == 404
    assert world["app"].test_client().post(f"/environments/{env_id}/delete").status_code == 400  # CSRF, signed out
    assert Environment.get_by_id(env_id).network_level == "none"


def test_sharing_needs_membership_of_the_team(world):  # noqa: F811
    r = api(world, "eve")("post", "/environments", json={"name": "x", "team": "core"})
    assert r.status_code == 400 and "'team': you are not a member of a team 'core'" in r.json["error"]
    assert not Environment.select().where(Environment.name == "x").exists()
    env_id = shared_env(world)
    r = api(world, "alice")("patch", f"/environments/{env_id}", json={"team": ""})  # unshared again
    assert r.status_code == 200 and r.json["team"] is None
    assert api(world, "bob")("get", "/environments").json["environments"] == []
    browser = world["as_"]("alice")
    assert '>core</option>' in browser.get("/environments/new").get_data(as_text=True)


@pytest.mark.parametrize("status", Status.ACTIVE)
def test_delete_is_refused_while_a_running_session_uses_it(world, status):  # noqa: F811
    env_id = shared_env(world)
    session = world["service"].create(world["users"]["bob"], NewSession("acme/api", "Fix", environment=env_id))
    Session.update(status=status).where(Session.id == session.id).execute()
    r = api(world, "alice")("delete", f"/environments/{env_id}")
    assert r.status_code == 409 and session.id in r.json["error"] and "was not deleted" in r.json["error"]
    assert "cancel" in r.json["hint"]
    page = world["as_"]("alice").post(f"/environments/{env_id}/delete")
    assert page.status_code == 409 and session.id in page.get_data(as_text=True)
    assert Environment.get_or_none(Environment.id == env_id) is not None


def test_delete_keeps_what_finished_sessions_started_with(world):  # noqa: F811
    env_id = shared_env(world)
    session = world["service"].create(world["users"]["alice"], NewSession("acme/api", "Fix", environment=env_id))
    Session.update(status=Status.IDLE).where(Session.id == session.id).execute()
    r = api(world, "alice")("delete", f"/environments/{env_id}")
    assert r.status_code == 200 and r.json == {"deleted": env_id}
    assert Environment.get_or_none(Environment.id == env_id) is None
    kept = Session.get_by_id(session.id)
    assert kept.environment_id is None and kept.environment_snapshot["name"] == "py"
    # in the console too
    other = api(world, "alice")("post", "/environments", json={"name": "other"}).json["id"]
    assert world["as_"]("alice").post(f"/environments/{other}/delete").status_code == 302
    assert Environment.get_or_none(Environment.id == other) is None
