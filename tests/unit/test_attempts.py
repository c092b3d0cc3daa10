"""Best-of-N: a task as 1–4 grouped sessions, compared side by side, one picked and the others
finished — in the service, the API and the console."""

from __future__ import annotations

import pytest

from appliance.accounts.models import ApiToken
from appliance.errors import Forbidden, Invalid, NotFound
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions import attempts
from appliance.sessions.models import DiffFile, Session, Status, Turn
from appliance.sessions.service import NewSession, SessionService
from appliance.sessions.spend import budgets
from netpolicy.usage import ModelUsage
from webui import create_app

from helpers import console_login, people, schema_checked_client


@pytest.fixture
def world(db, cfg):
    users, _ = people()
    Repository.create(name="acme/api", url="/srv/api.git")
    svc = SessionService(cfg)
    app = create_app(Services.build(cfg, sessions=svc), test_config={"TESTING": True})
    return dict(users=users, svc=svc, app=app)


def task(**kw):
    return NewSession("acme/api", "Make the parser faster", visibility="team", **kw)


def with_diff(session: Session, text: str) -> None:
    turn = Turn.get(Turn.session == session)
    DiffFile.create(session=session, turn=turn, path="parser.py", change="modified", added=1, removed=1,
                    patch=f"@@ -1,1 +1,1 @@\n-slow()\n+{text}\n")
    Session.update(diff_added=1, diff_removed=1).where(Session.id == session.id).execute()


def test_attempts_are_grouped_sessions_on_their_own_branches(world):
    group = attempts.create(world["svc"], world["users"]["alice"], task(), 3)
    assert [s.attempt for s in group] == [1, 2, 3] and len({s.group_id for s in group}) == 1
    assert group[0].group_id.startswith("grp-") and len({s.work_branch for s in group}) == 3
    assert all(s.status == Status.QUEUED and s.turns[0].message == "Make the parser faster" for s in group)
    one = attempts.create(world["svc"], world["users"]["alice"], task(), 1)
    assert one[0].group_id is None and one[0].attempt is None


@pytest.mark.parametrize("count", [0, 5, "2", True, None])
def test_a_wrong_count_creates_nothing(world, count):
    with pytest.raises(Invalid, match="from 1 to 4"):
        attempts.create(world["svc"], world["users"]["alice"], task(), count)
    assert Session.select().count() == 0


def test_all_or_none_when_an_attempt_cannot_start(world, monkeypatch):
    made = []
    real = world["svc"].create

    def third_is_over_budget(user, req):
        if len(made) == 2:
            raise budgets.BudgetExceeded("your monthly model budget is used up")
        made.append(1)
        return real(user, req)

    monkeypatch.setattr(world["svc"], "create", third_is_over_budget)
    with pytest.raises(budgets.BudgetExceeded):
        attempts.create(world["svc"], world["users"]["alice"], task(), 3)
    assert Session.select().count() == 0 and Turn.select().count() == 0


def test_the_real_budget_refuses_the_whole_group(world):
    ModelUsage.create(session_id=world["svc"].create(world["users"]["alice"], task()).id, host="api.anthropic.com",
                      model="claude-sonnet-4-5", output_tokens=1_000_000)  # $15
    budgets.set_budget("user", "alice", 10)
    with pytest.raises(budgets.BudgetExceeded):
        attempts.create(world["svc"], world["users"]["alice"], task(), 2)
    assert Session.select().count() == 1


def test_pick_keeps_one_and_finishes_the_others(world):
    alice = world["users"]["alice"]
    a, b, c = attempts.create(world["svc"], alice, task(), 3)
    Session.update(status=Status.IDLE).where(Session.id.in_([a.id, b.id])).execute()  # c still queued
    with pytest.raises(Invalid, match="not an attempt of"):
        attempts.pick(world["svc"], alice, a.group_id, "ses-other")
    with pytest.raises(Forbidden):
        attempts.pick(world["svc"], world["users"]["bob"], a.group_id, a.id)  # a team mate sees, may not pick
    assert Session.get_by_id(b.id).status == Status.IDLE  # nothing changed
    after = {s.id: s.status for s in attempts.pick(world["svc"], alice, a.group_id, b.id)}
    assert after == {a.id: Status.COMPLETED, b.id: Status.IDLE, c.id: Status.CANCELLED}
    assert attempts.picked(attempts.members(alice, a.group_id)) == b.id
    with pytest.raises(Invalid, match="already picked"):
        attempts.pick(world["svc"], alice, a.group_id, b.id)
    with pytest.raises(NotFound):
        attempts.members(world["users"]["eve"], a.group_id)  # an outsider: no such group


def test_api_attempts_compare_and_pick(world):
    client = schema_checked_client(world["app"])
    tokens = {n: ApiToken.issue(u) for n, u in world["users"].items()}

    def call(who, method, path, **kw):
        return getattr(client, method)(f"/api/v1{path}", headers={"Authorization": f"Bearer {tokens[who]}"}, **kw)

    r = call("alice", "post", "/sessions", json={"repository": "acme/api", "prompt": "Make it fast", "attempts": 2,
                                                  "visibility": "team"})
    assert r.status_code == 201, r.json
    group = r.json["group"]
    assert r.json["attempt"] == 1 and r.json["group_id"] == group["id"] and len(group["sessions"]) == 2
    single = call("alice", "post", "/sessions", json={"repository": "acme/api", "prompt": "x"}).json
    assert single["group"] is None and single["group_id"] is None
    bad = call("alice", "post", "/sessions", json={"repository": "acme/api", "prompt": "x", "attempts": 9})
    assert bad.status_code == 400 and "from 1 to 4" in bad.json["error"]
    first, second = (Session.get_by_id(i) for i in group["sessions"])
    with_diff(first, "fast()")
    Session.update(status=Status.IDLE).where(Session.id.in_(group["sessions"])).execute()
    shown = call("bob", "get", f"/groups/{group['id']}").json  # a team mate may look
    assert [a["attempt"] for a in shown["attempts"]] == [1, 2] and shown["picked"] is None
    assert shown["attempts"][0]["files"] == [{"path": "parser.py", "change": "modified", "added": 1, "removed": 1}]
    assert call("eve", "get", f"/groups/{group['id']}").status_code == 404
    assert call("bob", "post", f"/groups/{group['id']}/pick", json={"session": first.id}).status_code == 403
    assert call("eve", "post", f"/groups/{group['id']}/pick", json={"session": first.id}).status_code == 404
    picked = call("alice", "post", f"/groups/{group['id']}/pick", json={"session": first.id}).json
    assert picked["picked"] == first.id
    assert {a["id"]: a["status"] for a in picked["attempts"]} == {first.id: "idle", second.id: "completed"}


def test_console_new_attempts_compare_side_by_side_and_pick(world):
    alice, csrf = console_login(world["app"], "alice")
    assert 'id="attempts"' in alice.get("/sessions/new").get_data(as_text=True)
    r = alice.post("/sessions/new", data={"repository": "acme/api", "prompt": "Make the parser faster",
                                          "attempts": "2", "visibility": "team", "agent": "claude-code",
                                          "csrf_token": csrf})
    assert r.status_code == 302 and "/groups/grp-" in r.location
    group_id = r.location.rsplit("/", 1)[1]
    first, second = Session.select().where(Session.group_id == group_id).order_by(Session.attempt)
    with_diff(first, "fast()")
    with_diff(second, "faster()")
    Session.update(status=Status.IDLE).execute()
    page = alice.get(f"/groups/{group_id}").get_data(as_text=True)
    columns = page.split('class="card attempt')[1:]
    assert len(columns) == 2 and "+fast()" not in page  # rows, not raw patch lines
    assert "fast()" in columns[0] and "faster()" in columns[1] and "Attempt 1" in columns[0]
    assert all("Pick this one" in c for c in columns)
    assert f'href="/groups/{group_id}"' in alice.get(f"/sessions/{first.id}").get_data(as_text=True)
    bob, bob_csrf = console_login(world["app"], "bob")
    seen = bob.get(f"/groups/{group_id}").get_data(as_text=True)
    assert "faster()" in seen and "Pick this one" not in seen  # read-only for a team mate
    assert bob.post(f"/groups/{group_id}/pick", data={"session": first.id, "csrf_token": bob_csrf}).status_code == 403
    eve, _ = console_login(world["app"], "eve")
    assert eve.get(f"/groups/{group_id}").status_code == 404
    assert alice.post(f"/groups/{group_id}/pick", data={"session": second.id}).status_code in (400, 403)  # no CSRF
    assert alice.post(f"/groups/{group_id}/pick", data={"session": second.id, "csrf_token": csrf}).status_code == 302
    page = alice.get(f"/groups/{group_id}").get_data(as_text=True)
    assert 'id="picked-note"' in page and "Pick this one" not in page
    assert Session.get_by_id(first.id).status == Status.COMPLETED and Session.get_by_id(second.id).status == Status.IDLE
    r = alice.post("/sessions/new", data={"repository": "acme/api", "prompt": "x", "attempts": "lots",
                                          "agent": "claude-code", "csrf_token": csrf})
    assert r.status_code == 400 and "attempts must be a whole number" in r.get_data(as_text=True)
