"""The REST API through Flask's test client: every route as owner, team mate, outsider, anonymous."""

import pytest

from appliance.accounts.models import ApiToken, Team, TeamMember, User
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Comment, DiffFile, Session, Status, Turn
from appliance.sessions.service import SessionService
from webui import create_app

from helpers import StandInForge, schema_checked_client


@pytest.fixture
def env(db, cfg):
    users = {name: User.create(username=name, is_admin=(name == "admin")) for name in ("alice", "bob", "eve", "admin")}
    team = Team.create(name="core")
    for name in ("alice", "bob"):
        TeamMember.create(team=team, user=users[name])
    Repository.create(name="acme/api", url="/srv/api.git", credential_kind="token", credential_secret="ghp_SECRET")
    tokens = {name: ApiToken.issue(u) for name, u in users.items()}
    prs = StandInForge()
    app = create_app(Services.build(cfg, sessions=SessionService(cfg, forge_for=prs)))
    client = schema_checked_client(app)

    def call(who, method, path, **kw):
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
        return getattr(client, method)(f"/api/v1{path}", headers=headers, **kw)

    return dict(call=call, users=users, prs=prs, client=client)


def start(env, **kw):
    r = env["call"]("alice", "post", "/sessions", json={"repository": "acme/api", "prompt": "Fix the bug", **kw})
    assert r.status_code == 201, r.json
    return r.json["id"]


def test_anonymous_and_bad_tokens_get_401_everywhere(env):
    for path in ("/sessions", "/environments", "/repositories", "/sessions/x", "/sessions/x/events"):
        assert env["client"].get(f"/api/v1{path}").status_code == 401
        assert env["client"].get(f"/api/v1{path}", headers={"Authorization": "Bearer apl_forged"}).status_code == 401
    assert env["client"].post("/api/v1/sessions", json={}).status_code == 401


def test_revoked_token_is_refused(env):
    ApiToken.update(revoked=True).where(ApiToken.user == env["users"]["alice"]).execute()
    assert env["call"]("alice", "get", "/sessions").status_code == 401


SESSION_ROUTES = [
    ("get", "", None), ("get", "/events", None), ("get", "/diff", None), ("get", "/comments", None),
    ("post", "/messages", {"text": "more"}), ("post", "/comments", {"path": "a.py", "line": 1, "body": "x"}),
    ("post", "/comments/send", {}), ("post", "/cancel", {}), ("post", "/interrupt", {}), ("post", "/pr", {}),
    ("post", "/complete", {}),
    ("post", "/visibility", {"visibility": "public"}),
]


@pytest.mark.parametrize("method,suffix,body", SESSION_ROUTES)
def test_a_private_session_is_404_for_everyone_but_its_owner_and_admins(env, method, suffix, body):
    sid = start(env)
    for who in ("bob", "eve"):
        r = env["call"](who, method, f"/sessions/{sid}{suffix}", json=body)
        assert r.status_code == 404, (who, r.json)
        assert "Fix the bug" not in r.get_data(as_text=True)
    assert env["call"]("alice", "get", f"/sessions/{sid}").status_code == 200
    assert env["call"]("admin", "get", f"/sessions/{sid}").status_code == 200
    assert env["prs"].requests == []


@pytest.mark.parametrize("method,suffix,body", [r for r in SESSION_ROUTES if r[0] == "post"])
def test_a_team_session_is_readable_by_team_mates_but_only_the_owner_changes_it(env, method, suffix, body):
    sid = start(env, visibility="team")
    assert env["call"]("bob", "get", f"/sessions/{sid}").status_code == 200
    assert env["call"]("eve", "get", f"/sessions/{sid}").status_code == 404
    assert env["call"]("bob", method, f"/sessions/{sid}{suffix}", json=body).status_code == 403
    assert env["call"]("eve", method, f"/sessions/{sid}{suffix}", json=body).status_code == 404


def test_list_shows_only_what_the_caller_may_see(env):
    private = start(env)
    team = start(env, visibility="team")
    public = start(env, visibility="public")
    ids = lambda who: {s["id"] for s in env["call"](who, "get", "/sessions").json["sessions"]}  # noqa: E731
    assert ids("alice") == {private, team, public}
    assert ids("bob") == {team, public}
    assert ids("eve") == {public}
    assert ids("admin") == {private, team, public}


def test_a_list_page_costs_the_same_queries_for_3_sessions_as_for_30(env, monkeypatch):
    from appliance.db import database

    def queries_for_a_page() -> int:
        executed = []
        real = database.obj.execute_sql
        monkeypatch.setattr(database.obj, "execute_sql", lambda sql, *a, **k: executed.append(sql) or real(sql, *a, **k))
        body = env["call"]("bob", "get", "/sessions?repository=acme/api").json
        monkeypatch.undo()
        assert all(s["owner"] == "alice" and s["repository"] == "acme/api" for s in body["sessions"])
        return len(body["sessions"]), len(executed)

    for _ in range(3):
        start(env, visibility="team")
    shown_few, few = queries_for_a_page()
    for _ in range(27):
        start(env, visibility="team")
    shown_many, many = queries_for_a_page()
    assert (shown_few, shown_many) == (3, 30)
    assert many == few


def test_hidden_owner_name(env):
    sid = start(env, visibility="public")
    env["call"]("alice", "post", f"/sessions/{sid}/visibility", json={"visibility": "public", "hide_owner": True})
    assert env["call"]("eve", "get", f"/sessions/{sid}").json["owner"] is None
    assert env["call"]("alice", "get", f"/sessions/{sid}").json["owner"] == "alice"


def test_create_validation_errors_are_400_with_a_hint(env):
    r = env["call"]("alice", "post", "/sessions", json={"repository": "acme/api"})
    assert r.status_code == 400 and "prompt" in r.json["error"]
    r = env["call"]("alice", "post", "/sessions", json={"repository": "nope", "prompt": "x"})
    assert r.status_code == 404 and "hint" in r.json
    r = env["call"]("alice", "post", "/sessions", data="not json", content_type="application/json")
    assert r.status_code == 400
    assert Session.select().count() == 0


def test_events_since_an_id(env):
    sid = start(env)
    first = env["call"]("alice", "get", f"/sessions/{sid}/events").json["events"]
    assert [e["kind"] for e in first] == ["status"]
    env["call"]("alice", "post", f"/sessions/{sid}/messages", json={"text": "and docs"})
    more = env["call"]("alice", "get", f"/sessions/{sid}/events?after={first[-1]['id']}").json["events"]
    assert [e["kind"] for e in more] == ["message_queued"]
    assert all(e["id"] > first[-1]["id"] for e in more)


def test_interrupt_without_a_running_turn_says_so(env):
    sid = start(env)
    r = env["call"]("alice", "post", f"/sessions/{sid}/interrupt", json={})
    assert r.status_code == 400 and "no turn" in r.json["error"], r.json
    assert env["client"].post(f"/api/v1/sessions/{sid}/interrupt").status_code == 401


def test_diff_and_comments_round_trip(env):
    sid = start(env)
    s = Session.get_by_id(sid)
    turn = Turn.get(Turn.session == s)
    DiffFile.create(session=s, turn=turn, path="a.py", change="modified", added=1, removed=0,
                    patch="@@ -1,1 +1,2 @@\n x\n+y\n")
    Session.update(diff_added=1, status=Status.IDLE).execute()
    diff = env["call"]("alice", "get", f"/sessions/{sid}/diff").json
    assert diff["added"] == 1 and [f["path"] for f in diff["files"]] == ["a.py"]
    assert env["call"]("alice", "post", f"/sessions/{sid}/comments", json={"path": "a.py", "line": 2, "body": "why?"}).status_code == 201
    assert env["call"]("alice", "post", f"/sessions/{sid}/comments/send", json={}).json["turn"] == 2


def test_environments_are_per_user_and_validated(env):
    call = env["call"]
    r = call("alice", "post", "/environments", json={"name": "dev", "network_level": "custom",
                                                     "domains": ["*.example.com", "pypi.org"], "variables": "A=1\n"})
    assert r.status_code == 201 and r.json["is_default"] is True
    eid = r.json["id"]
    assert call("bob", "get", "/environments").json["environments"] == []
    assert call("bob", "put", f"/environments/{eid}", json={"name": "x"}).status_code == 404
    bad = call("alice", "put", f"/environments/{eid}", json={"variables": "A=1\nbroken line\n"})
    assert bad.status_code == 400 and "line 2" in bad.json["error"]
    bad = call("alice", "put", f"/environments/{eid}", json={"domains": ["exa*mple.com"]})
    assert bad.status_code == 400
    assert call("alice", "get", "/environments").json["environments"][0]["variables"] == "A=1\n"


def test_repository_credentials_are_write_only_and_admin_only(env):
    listed = env["call"]("alice", "get", "/repositories").get_data(as_text=True)
    assert "ghp_SECRET" not in listed and "acme/api" in listed
    r = env["call"]("alice", "post", "/repositories", json={"name": "x/y", "url": "https://h/x/y.git"})
    assert r.status_code == 403
    r = env["call"]("admin", "post", "/repositories", json={"name": "x/y", "url": "https://h/x/y.git",
                                                           "credential_kind": "token", "credential_secret": "tok_123"})
    assert r.status_code == 201 and "tok_123" not in r.get_data(as_text=True)


def test_a_session_says_why_it_cannot_have_a_pull_request(env):
    sid = start(env)
    got = env["call"]("alice", "get", f"/sessions/{sid}").json
    assert got["pr_blocked"]["reason"] == "nothing has been pushed yet" and got["pr_blocked"]["hint"]
    assert [t["answer_only"] for t in got["turns"]] == [False]
    Turn.update(status="completed").where(Turn.session == sid).execute()
    Session.update(status=Status.IDLE).where(Session.id == sid).execute()
    got = env["call"]("alice", "get", f"/sessions/{sid}").json
    assert "changed no files" in got["pr_blocked"]["reason"] and got["turns"][0]["answer_only"] is True
    Turn.update(commit_sha="abc").where(Turn.session == sid).execute()
    Session.update(head_sha="abc").where(Session.id == sid).execute()
    assert env["call"]("alice", "get", f"/sessions/{sid}").json["pr_blocked"] is None


def test_comments_follow_their_lines_onto_a_later_turn_or_are_outdated(env):
    call, sid = env["call"], start(env)
    s = Session.get_by_id(sid)
    first = Turn.get(Turn.session == s)
    DiffFile.create(session=s, turn=first, path="a.py", change="modified", added=1, removed=1,
                    patch="@@ -1,3 +1,3 @@\n import os\n-x = 1\n+x = 2\n print(x)\n")
    Session.update(status=Status.IDLE).execute()
    r = call("alice", "post", f"/sessions/{sid}/comments", json={"path": "a.py", "line": 9, "body": "?"})
    assert r.status_code == 400 and "line 9" in r.json["error"]
    moved = call("alice", "post", f"/sessions/{sid}/comments", json={"path": "a.py", "line": 2, "body": "why 2?"}).json
    assert moved["turn"] == 1 and moved["line_text"] == "x = 2"
    call("alice", "post", f"/sessions/{sid}/comments", json={"path": "a.py", "line": 3, "body": "use logging"})
    assert call("alice", "post", f"/sessions/{sid}/comments/send", json={}).json["turn"] == 2
    # turn 2 put two lines on top and changed print(x)
    second = Turn.get((Turn.session == s) & (Turn.number == 2))
    DiffFile.create(session=s, turn=second, path="a.py", change="modified", added=4, removed=2,
                    patch="@@ -1,3 +1,5 @@\n+import sys\n+\n import os\n-x = 1\n+x = 2\n-print(x)\n+log(x)\n")
    listed = call("alice", "get", f"/sessions/{sid}/comments").json
    assert listed["turn"] == 2
    assert [(c["body"], c["anchor"]) for c in listed["comments"]] == [
        ("why 2?", {"turn": 2, "line": 4, "state": "moved"}),
        ("use logging", {"turn": 2, "line": None, "state": "outdated"})]
    on_first = call("alice", "get", f"/sessions/{sid}/comments?turn=1").json["comments"]
    assert [c["anchor"]["state"] for c in on_first] == ["current", "current"]
    # the team mate sees the same placement on a team session; an outsider sees nothing
    Session.update(visibility="team").execute()
    assert call("bob", "get", f"/sessions/{sid}/comments").json == listed
    assert call("eve", "get", f"/sessions/{sid}/comments").status_code == 404
    # a comment on turn 2's diff is written there, and is not shown on turn 1's
    Session.update(status=Status.IDLE).execute()
    late = call("alice", "post", f"/sessions/{sid}/comments", json={"path": "a.py", "line": 5, "body": "name it",
                                                                    "turn": 2}).json
    assert late["turn"] == 2 and late["line_text"] == "log(x)"
    assert call("alice", "get", f"/sessions/{sid}/comments?turn=1").json["comments"][-1]["anchor"] is None
    # sending it says where the outdated comment was
    Comment.update(sent_in=None).execute()
    number = call("alice", "post", f"/sessions/{sid}/comments/send", json={}).json["turn"]
    message = Turn.get((Turn.session == s) & (Turn.number == number)).message
    assert "a.py:4\n> x = 2\nwhy 2?" in message
    assert "a.py (outdated: was line 3, which no longer reads the same)\n> print(x)\nuse logging" in message
    assert "a.py:5\n> log(x)\nname it" in message
