"""Spend: metered usage attributed to sessions, users and teams; monthly budgets refuse new turns
at their limit; who may see whose usage (API, console, /metrics)."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.accounts.models import ApiToken
from appliance.db import utcnow
from appliance.errors import ConfigError
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Session, Status, Turn
from appliance.sessions.service import NewSession, SessionService
from appliance.sessions.spend import budgets, meter
from appliance_base.prices import parse_prices, price_of
from netpolicy.audit import AuditWriter
from netpolicy.usage import ModelUsage
from webui import create_app

from helpers import console_login, make_config, people, schema_checked_client

MILLION = 1_000_000


@pytest.fixture
def world(db, cfg):
    users, team = people()
    Repository.create(name="acme/api", url="/srv/api.git")
    svc = SessionService(cfg)
    sessions = {n: svc.create(users[n], NewSession("acme/api", f"task of {n}", visibility="team"))
                for n in ("alice", "bob", "eve")}
    return dict(users=users, team=team, svc=svc, sessions=sessions)


def meter_row(session_id, model="claude-sonnet-4-5", when=None, **counts):
    return ModelUsage.create(session_id=session_id, sandbox_id="sb-x", host="api.anthropic.com", model=model,
                             time=when or utcnow(), **counts)


def test_prices_pick_the_longest_prefix_and_refuse_nonsense():
    prices = parse_prices("claude-opus=15,75,1.5,18.75; claude=3,15,0.3,3.75; *=1,1,1,1")
    assert price_of(prices, "claude-opus-4-1") == (15, 75, 1.5, 18.75)
    assert price_of(prices, "claude-sonnet-4-5") == (3, 15, 0.3, 3.75)
    assert price_of(prices, "gpt-5") == (1, 1, 1, 1)
    assert price_of(parse_prices("claude=1,2,3,4"), "gpt-5") == (0, 0, 0, 0)
    for bad in ("claude=1,2,3", "claude", "=1,2,3,4", "x=1,2,3,-4", "x=a,b,c,d"):
        with pytest.raises(ConfigError, match="model_prices"):
            parse_prices(bad)


def test_usage_is_attributed_to_session_owner_and_team_for_this_month(world, cfg):
    s = world["sessions"]
    meter_row(s["alice"].id, input_tokens=MILLION, output_tokens=MILLION)  # $3 + $15
    meter_row(s["alice"].id, model="claude-opus-4-1", cache_read_tokens=MILLION)  # $1.5
    meter_row(s["bob"].id, output_tokens=MILLION // 10)  # $1.5
    meter_row(s["eve"].id, input_tokens=MILLION)  # $3, not in the team
    meter_row(s["alice"].id, input_tokens=50 * MILLION, when=utcnow() - dt.timedelta(days=40))  # an earlier month
    meter_row(None, input_tokens=MILLION)  # an admin's sandbox: nobody's session
    alice = meter.user_month(cfg, world["users"]["alice"])
    assert (alice.input_tokens, alice.output_tokens, alice.cache_read_tokens) == (MILLION, MILLION, MILLION)
    assert alice.cost_usd == pytest.approx(19.5)
    assert meter.team_month(cfg, world["team"]).cost_usd == pytest.approx(21.0)
    assert meter.session_spend(cfg, [s["alice"].id])[s["alice"].id].cost_usd == pytest.approx(169.5)  # all months
    assert meter.teams_month(cfg)[world["team"].id].cost_usd == pytest.approx(21.0)
    assert meter.user_month(cfg, world["users"]["admin"]).cost_usd == 0


def test_the_proxys_writer_stores_usage_rows(world):
    writer = AuditWriter().start()
    entry = type("Entry", (), {"sandbox_id": "sb-9", "session_id": world["sessions"]["bob"].id})()
    writer.usage(entry, host="api.anthropic.com", model="claude-x", input_tokens=7, output_tokens=8,
                 cache_read_tokens=0, cache_write_tokens=9)
    writer.close()
    row = ModelUsage.get()
    assert (row.sandbox_id, row.session_id, row.input_tokens, row.output_tokens, row.cache_write_tokens) == (
        "sb-9", world["sessions"]["bob"].id, 7, 8, 9)


def test_at_the_users_limit_new_sessions_and_turns_are_refused(world, cfg):
    svc, alice, s = world["svc"], world["users"]["alice"], world["sessions"]["alice"]
    budgets.set_budget("user", "alice", 10)
    meter_row(s.id, input_tokens=MILLION)  # $3: under
    svc.create(alice, NewSession("acme/api", "more"))
    meter_row(s.id, output_tokens=MILLION)  # $18: over
    before = (Session.select().count(), Turn.select().count())
    with pytest.raises(budgets.BudgetExceeded, match=r"your monthly model budget is used up \(\$18.00 of \$10.00\)"):
        svc.create(alice, NewSession("acme/api", "even more"))
    Session.update(status=Status.IDLE).where(Session.id == s.id).execute()
    with pytest.raises(budgets.BudgetExceeded, match="no new turns until"):
        svc.message(alice, s.id, "continue")
    assert (Session.select().count(), Turn.select().count()) == before  # nothing was created
    # others are not affected; raising the budget lets alice go on
    svc.create(world["users"]["bob"], NewSession("acme/api", "bob's"))
    budgets.set_budget("user", "alice", 100)
    svc.message(alice, s.id, "continue")


def test_a_turn_queued_before_the_limit_does_not_start_after_it(world, cfg):
    from appliance.sessions.runner import TurnRunner

    svc, alice = world["svc"], world["users"]["alice"]
    budgets.set_budget("user", "alice", 10)
    queued = svc.create(alice, NewSession("acme/api", "queued while under the limit"))
    meter_row(world["sessions"]["alice"].id, output_tokens=MILLION)  # $15: now over
    turn = Turn.get(Turn.session == queued.id)
    TurnRunner(cfg, sandboxes=None, git_remote=None, mirrors=None, git=None).run(turn.id)  # no guest is asked for
    turn = Turn.get_by_id(turn.id)
    assert turn.status == "failed" and "monthly model budget is used up" in turn.error
    assert Session.get_by_id(queued.id).status == Status.FAILED


def test_a_teams_limit_stops_all_its_members_and_the_default_applies(world, cfg):
    meter_row(world["sessions"]["bob"].id, output_tokens=MILLION)  # $15 by bob
    budgets.set_budget("team", "core", 12)
    with pytest.raises(budgets.BudgetExceeded, match="team core's monthly model budget"):
        world["svc"].create(world["users"]["alice"], NewSession("acme/api", "x"))
    world["svc"].create(world["users"]["eve"], NewSession("acme/api", "x"))  # not in the team
    budgets.set_budget("team", "core", None)  # back to the default: none
    world["svc"].create(world["users"]["alice"], NewSession("acme/api", "x"))
    strict = SessionService(make_config(cfg.state_dir, user_monthly_budget_usd=1.0))
    with pytest.raises(budgets.BudgetExceeded):
        strict.create(world["users"]["bob"], NewSession("acme/api", "x"))


def test_set_budget_says_what_is_wrong(world):
    with pytest.raises(Exception, match="no user named 'nobody'"):
        budgets.set_budget("user", "nobody", 5)
    with pytest.raises(Exception, match="0 \\(no budget\\) or more"):
        budgets.set_budget("user", "alice", -1)
    with pytest.raises(Exception, match="unknown budget scope"):
        budgets.set_budget("org", "alice", 1)


@pytest.fixture
def api(world, cfg):
    app = create_app(Services.build(cfg, sessions=world["svc"]), test_config={"TESTING": True})
    client = schema_checked_client(app)
    tokens = {n: ApiToken.issue(u) for n, u in world["users"].items()}

    def call(who, method, path, **kw):
        return getattr(client, method)(f"/api/v1{path}", headers={"Authorization": f"Bearer {tokens[who]}"}, **kw)

    return dict(call=call, app=app, client=client)


def test_api_usage_is_seen_only_by_its_owner_and_admins(world, api):
    call, sid = api["call"], world["sessions"]["alice"].id
    meter_row(sid, input_tokens=MILLION)
    assert call("alice", "get", f"/sessions/{sid}/usage").json["cost_usd"] == 3.0
    assert call("admin", "get", f"/sessions/{sid}/usage").json["input_tokens"] == MILLION
    assert call("bob", "get", f"/sessions/{sid}").status_code == 200  # bob may see the team session...
    assert call("bob", "get", f"/sessions/{sid}/usage").status_code == 404  # ...not what it costs alice
    assert call("eve", "get", f"/sessions/{sid}/usage").status_code == 404
    mine = call("alice", "get", "/me/usage").json
    assert mine["spend"]["cost_usd"] == 3.0 and mine["budgets"][0] == {
        "scope": "user", "name": "alice", "used_usd": 3.0, "budget_usd": None, "exceeded": False}
    assert call("bob", "get", "/me/usage").json["spend"]["cost_usd"] == 0
    for who in ("alice", "bob"):
        assert call(who, "get", "/admin/spend").status_code == 404
        assert call(who, "put", "/admin/budgets", json={"scope": "user", "name": who, "monthly_usd": 1e6}).status_code == 404
    assert api["client"].get("/api/v1/me/usage").status_code == 401
    everyone = call("admin", "get", "/admin/spend").json
    assert {r["name"]: r["cost_usd"] for r in everyone["users"]}["alice"] == 3.0
    assert {r["name"]: r["cost_usd"] for r in everyone["teams"]} == {"core": 3.0}


def test_api_budget_set_by_an_admin_refuses_the_next_session_with_the_figures(world, api):
    call = api["call"]
    meter_row(world["sessions"]["alice"].id, output_tokens=MILLION)  # $15
    r = call("admin", "put", "/admin/budgets", json={"scope": "user", "name": "alice", "monthly_usd": 10})
    assert r.status_code == 200 and {u["name"]: u["budget_usd"] for u in r.json["users"]}["alice"] == 10
    r = call("alice", "post", "/sessions", json={"repository": "acme/api", "prompt": "again"})
    assert r.status_code == 403 and "$15.00 of $10.00" in r.json["error"] and "admin" in r.json["hint"]
    assert call("admin", "put", "/admin/budgets", json={"scope": "user", "name": "alice"}).status_code == 200
    assert call("alice", "post", "/sessions", json={"repository": "acme/api", "prompt": "again"}).status_code == 201
    bad = call("admin", "put", "/admin/budgets", json={"scope": "user", "name": "alice", "monthly_usd": "lots"})
    assert bad.status_code == 400 and "monthly_usd" in bad.json["error"]


def test_metrics_show_spend_per_user_team_and_live_session(world, api):
    meter_row(world["sessions"]["alice"].id, input_tokens=MILLION)
    budgets.set_budget("team", "core", 50)
    text = api["client"].get("/metrics").get_data(as_text=True)  # a caller on this host, as Prometheus is
    assert 'appliance_spend_month_usd{user="alice"} 3.0' in text
    assert 'appliance_spend_month_usd{team="core"} 3.0' in text
    assert 'appliance_model_tokens_month{user="alice",kind="input"} 1000000' in text
    assert 'appliance_budget_month_usd{team="core"} 50.0' in text
    assert f'appliance_session_spend_usd{{session="{world["sessions"]["alice"].id}"}} 3.0' in text


def test_console_account_page_session_head_and_admin_spend_page(world, api):
    sid = world["sessions"]["alice"].id
    meter_row(sid, input_tokens=MILLION, output_tokens=2 * MILLION)  # $33
    alice, _ = console_login(api["app"], "alice")
    page = alice.get("/account").get_data(as_text=True)
    total = page[page.index('id="month-total"'):page.index("</p>", page.index('id="month-total"'))]
    assert "$33.00" in total and "1,000,000 in / 2,000,000 out" in total
    assert "metered-spend" in alice.get(f"/sessions/{sid}").get_data(as_text=True)
    bob, bob_csrf = console_login(api["app"], "bob")
    assert "$33.00" not in bob.get("/account").get_data(as_text=True)
    shown = bob.get(f"/sessions/{sid}")
    assert shown.status_code == 200 and "metered-spend" not in shown.get_data(as_text=True)
    assert bob.get("/admin/spend").status_code == 404
    r = bob.post("/admin/spend", data={"scope": "user", "name": "bob", "monthly_usd": "999", "csrf_token": bob_csrf})
    assert r.status_code == 404 and budgets.user_budget(world["svc"].config, world["users"]["bob"]) == 0
    admin, admin_csrf = console_login(api["app"], "admin")
    page = admin.get("/admin/spend").get_data(as_text=True)
    assert 'data-name="alice"' in page and "$33.00" in page
    assert admin.post("/admin/spend", data={"scope": "user", "name": "alice", "monthly_usd": "20",
                                            "csrf_token": admin_csrf}).status_code == 302
    page = alice.get("/account").get_data(as_text=True)
    assert "$20.00" in page and "used up: new turns are refused" in page
    r = admin.post("/admin/spend", data={"scope": "user", "name": "alice", "monthly_usd": "x", "csrf_token": admin_csrf})
    assert r.status_code == 400 and "number of US dollars" in r.get_data(as_text=True)
