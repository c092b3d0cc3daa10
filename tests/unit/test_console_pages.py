"""The console's pages through Flask's test client: every route as owner, team mate, outsider and
anonymous; CSRF refused; write-only secrets never shown back."""

from __future__ import annotations

import re
import stat
import tomllib

import pytest
from werkzeug.security import generate_password_hash

from appliance.accounts.models import Team, TeamMember, User
from appliance.environments.models import Environment
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Comment, DiffFile, Session, Status, Turn, TurnStatus
from appliance.sessions.service import NewSession, SessionService
from webui import create_app

from helpers import StandInForge

PASSWORD = "correct horse battery"


class Browser:
    """A test client signed in as one user, carrying the CSRF token like the pages do."""

    def __init__(self, app, who: str | None):
        self.client = app.test_client()
        self.csrf = None
        if who:
            page = self.client.get("/login").get_data(as_text=True)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            r = self.client.post("/login", data={"username": who, "password": PASSWORD, "csrf_token": token})
            assert r.status_code == 302, r.get_data(as_text=True)
            self.refresh_csrf()

    def refresh_csrf(self):
        page = self.client.get("/environments").get_data(as_text=True)
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def post(self, path, data=None, csrf=True, **kw):
        data = dict(data or {})
        if csrf and self.csrf:
            data["csrf_token"] = self.csrf
        return self.client.post(path, data=data, **kw)


@pytest.fixture
def world(db, cfg):
    return build_world(cfg)


def build_world(cfg) -> dict:
    """alice and bob on a team, eve outside, an admin; a local-forge repository; a forge stand-in."""
    users = {n: User.create(username=n, is_admin=(n == "admin"), password_hash=generate_password_hash(PASSWORD))
             for n in ("alice", "bob", "eve", "admin")}
    team = Team.create(name="core")
    for n in ("alice", "bob"):
        TeamMember.create(team=team, user=users[n])
    repo = Repository.create(name="acme/api", url="/srv/api.git", credential_kind="token",
                             credential_secret="ghp_SECRET", forge="local")
    prs = StandInForge("/repos/acme/api/merge_requests/{number}")
    service = SessionService(cfg, forge_for=prs)
    app = create_app(Services.build(cfg, sessions=service), test_config={"TESTING": True})
    return dict(app=app, users=users, service=service, repo=repo, prs=prs, cfg=cfg,
                as_=lambda who: Browser(app, who))


def make_session(world, visibility="private", with_diff=True) -> str:
    s = world["service"].create(world["users"]["alice"], NewSession("acme/api", "Fix the bug in add()",
                                                                    agent="command", visibility=visibility))
    if with_diff:
        turn = Turn.get(Turn.session == s)
        DiffFile.create(session=s, turn=turn, path="app.py", change="modified", added=1, removed=1,
                        patch="@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n")
        Session.update(diff_added=1, diff_removed=1, status=Status.IDLE, head_sha="abc123").where(
            Session.id == s.id).execute()
        # the turn that made the diff ended at the pushed commit (the diff shows what the branch holds)
        Turn.update(status=TurnStatus.COMPLETED, commit_sha="abc123").where(Turn.id == turn.id).execute()
    return s.id


READ_ROUTES = ["", "/diff", "/egress", "/state"]
CHANGE_ROUTES = [("/message", {"text": "more"}), ("/cancel", {}), ("/complete", {}),
                 ("/comments", {"path": "app.py", "line": 1, "body": "x"}), ("/comments/send", {}), ("/pr", {}),
                 ("/share", {"visibility": "public"})]


def test_anonymous_is_sent_to_sign_in_everywhere(world):
    sid = make_session(world)
    anon = world["as_"](None)
    for path in ["/", "/sessions/new", "/environments", "/environments/new", "/admin/users",
                 "/admin/repositories", "/admin/credentials", "/admin/teams",
                 *[f"/sessions/{sid}{r}" for r in READ_ROUTES], f"/sessions/{sid}/terminal"]:
        r = anon.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
    # a POST without a signed-in session fails the CSRF check before anything else
    for suffix, data in CHANGE_ROUTES:
        assert anon.post(f"/sessions/{sid}{suffix}", data).status_code == 400
    assert Session.get_by_id(sid).status == Status.IDLE


def test_sign_in_wrong_password_and_sign_out(world):
    b = world["as_"](None)
    page = b.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = b.client.post("/login", data={"username": "alice", "password": "nope", "csrf_token": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.get_data(as_text=True)
    r = b.client.post("/login", data={"username": "ghost", "password": "nope", "csrf_token": token})
    assert r.status_code == 401
    alice = world["as_"]("alice")
    assert alice.get("/").status_code == 200
    assert alice.post("/logout").status_code == 302
    assert alice.get("/").status_code == 302


def test_login_refuses_an_offsite_next(world):
    b = world["as_"](None)
    page = b.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = b.client.post("/login?next=//evil.example/x", data={"username": "alice", "password": PASSWORD,
                                                             "csrf_token": token})
    assert r.headers["Location"] == "/"


def test_a_password_change_signs_out_other_browsers(world):
    alice = world["as_"]("alice")
    admin = world["as_"]("admin")
    uid = world["users"]["alice"].id
    assert admin.post(f"/admin/users/{uid}", {"password": "another long one"}).status_code == 302
    assert alice.get("/").status_code == 302


@pytest.mark.parametrize("suffix", READ_ROUTES + ["/terminal"])
def test_a_private_session_is_404_for_others_on_every_page(world, suffix):
    sid = make_session(world)
    for who in ("bob", "eve"):
        r = world["as_"](who).get(f"/sessions/{sid}{suffix}")
        assert r.status_code == 404, (who, suffix)
        assert "Fix the bug" not in r.get_data(as_text=True)
    assert world["as_"]("alice").get(f"/sessions/{sid}{suffix}").status_code == 200
    assert world["as_"]("admin").get(f"/sessions/{sid}{suffix}").status_code == 200


@pytest.mark.parametrize("suffix,data", CHANGE_ROUTES)
def test_changes_are_404_for_outsiders_and_403_for_team_readers(world, suffix, data):
    private, team = make_session(world), make_session(world, visibility="team")
    for who in ("bob", "eve"):
        assert world["as_"](who).post(f"/sessions/{private}{suffix}", data).status_code == 404
    assert world["as_"]("bob").post(f"/sessions/{team}{suffix}", data).status_code == 403
    assert world["as_"]("eve").post(f"/sessions/{team}{suffix}", data).status_code == 404
    assert world["prs"].requests == []
    assert Comment.select().count() == 0
    assert {s.visibility for s in Session.select()} == {"private", "team"}


@pytest.mark.parametrize("suffix,data", CHANGE_ROUTES)
def test_csrf_is_required_on_every_change(world, suffix, data):
    sid = make_session(world)
    alice = world["as_"]("alice")
    r = alice.post(f"/sessions/{sid}{suffix}", data, csrf=False)
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    r = alice.post(f"/sessions/{sid}{suffix}", {**data, "csrf_token": "forged"}, csrf=False)
    assert r.status_code == 400
    assert Session.get_by_id(sid).visibility == "private" and Comment.select().count() == 0
    assert Turn.select().count() == 1


def test_csrf_on_environment_and_admin_forms(world):
    alice, admin = world["as_"]("alice"), world["as_"]("admin")
    assert alice.post("/environments/new", {"name": "x"}, csrf=False).status_code == 400
    assert admin.post("/admin/users", {"username": "z", "password": "x" * 10}, csrf=False).status_code == 400
    assert admin.post("/admin/credentials", {"host": "api.anthropic.com", "key": "k"}, csrf=False).status_code == 400
    assert Environment.select().count() == 0 and not User.select().where(User.username == "z").exists()


def test_team_share_is_read_only_for_team_mates_and_hidden_from_outsiders(world):
    sid = make_session(world, visibility="team")
    page = world["as_"]("bob").get(f"/sessions/{sid}").get_data(as_text=True)
    assert "Fix the bug" in page and 'id="read-only"' in page
    assert 'id="message-form"' not in page and 'id="tab-terminal"' not in page
    diff = world["as_"]("bob").get(f"/sessions/{sid}/diff").get_data(as_text=True)
    assert "return a + b" in diff and 'id="send-comments"' not in diff
    assert world["as_"]("bob").get(f"/sessions/{sid}/terminal").status_code == 404
    assert world["as_"]("eve").get(f"/sessions/{sid}").status_code == 404


def test_team_share_checks_repository_access(world):
    sid = make_session(world, visibility="team")
    other = Team.create(name="other")
    Repository.update(team=other).execute()  # bob may no longer use the repository
    TeamMember.create(team=other, user=world["users"]["alice"])
    assert world["as_"]("bob").get(f"/sessions/{sid}").status_code == 404


def test_share_hides_the_owner_name(world):
    sid = make_session(world)
    alice = world["as_"]("alice")
    assert alice.post(f"/sessions/{sid}/share", {"visibility": "public", "hide_owner": "on"}).status_code == 302
    s = Session.get_by_id(sid)
    assert s.visibility == "public" and s.hide_owner
    page = world["as_"]("eve").get(f"/sessions/{sid}").get_data(as_text=True)
    assert "Fix the bug" in page and "by alice" not in page
    assert "by alice" in alice.get(f"/sessions/{sid}").get_data(as_text=True)
    listed = world["as_"]("eve").get("/").get_data(as_text=True)
    assert sid in listed and ">alice<" not in listed


def test_session_list_filters_newest_first_and_pages(world):
    ids = [make_session(world, with_diff=False) for _ in range(3)]
    team = make_session(world, visibility="team")
    alice = world["as_"]("alice")
    page = alice.get("/").get_data(as_text=True)
    assert [m for m in re.findall(r'data-session="([^"]+)"', page)] == [team, *reversed(ids)]
    bob = world["as_"]("bob")
    assert re.findall(r'data-session="([^"]+)"', bob.get("/").get_data(as_text=True)) == [team]
    assert re.findall(r'data-session="([^"]+)"', bob.get("/?scope=mine").get_data(as_text=True)) == []
    assert re.findall(r'data-session="([^"]+)"', bob.get("/?scope=team").get_data(as_text=True)) == [team]
    assert re.findall(r'data-session="([^"]+)"', alice.get("/?status=idle").get_data(as_text=True)) == [team]
    assert len(re.findall(r'data-session=', alice.get("/?repository=acme/api").get_data(as_text=True))) == 4
    assert re.findall(r'data-session=', alice.get("/?repository=nope").get_data(as_text=True)) == []
    partial = alice.get("/?partial=1").get_data(as_text=True)
    assert "<html" not in partial and team in partial
    from webui.console import sessions as console_sessions

    old, console_sessions.PAGE_SIZE = console_sessions.PAGE_SIZE, 2
    try:
        first = alice.get("/").get_data(as_text=True)
        second = alice.get("/?page=2").get_data(as_text=True)
    finally:
        console_sessions.PAGE_SIZE = old
    assert re.findall(r'data-session="([^"]+)"', first) == [team, ids[2]] and 'id="older"' in first
    assert re.findall(r'data-session="([^"]+)"', second) == [ids[1], ids[0]]


def test_new_session_form_preselects_the_default_environment_and_returns_at_once(world):
    alice = world["as_"]("alice")
    u = world["users"]["alice"]
    Environment.create(owner=u, name="a-first", is_default=False)
    dflt = Environment.create(owner=u, name="b-default", is_default=True)
    page = alice.get("/sessions/new").get_data(as_text=True)
    assert re.search(rf'<option value="{dflt.id}" selected>b-default', page)
    r = alice.post("/sessions/new", {"repository": "acme/api", "prompt": "Add docs", "agent": "command",
                                     "command": "echo hi", "environment": str(dflt.id)})
    assert r.status_code == 302
    s = Session.get(Session.title == "Add docs")
    assert r.headers["Location"].endswith(f"/sessions/{s.id}")
    assert s.status == Status.QUEUED and s.environment_snapshot["command"] == "echo hi"
    bad = alice.post("/sessions/new", {"repository": "acme/api", "prompt": " ", "agent": "command"})
    assert bad.status_code == 400 and "the task is empty" in bad.get_data(as_text=True)


def test_session_page_shows_conversation_and_timings(world):
    sid = make_session(world)
    Turn.update(timings={"boot": 25.5, "agent": 1.25}, status="completed").execute()
    page = world["as_"]("alice").get(f"/sessions/{sid}").get_data(as_text=True)
    assert "Fix the bug in add()" in page and "boot 25.5s" in page and "+1" in page
    assert 'id="message-form"' in page and 'id="share-form"' in page


def test_live_state_carries_the_turn_list_as_it_changes(world):
    sid = make_session(world)
    alice = world["as_"]("alice")
    Turn.update(status="completed", timings={"agent": 3.0}).execute()
    alice.post(f"/sessions/{sid}/message", {"text": "and the docs"})
    state = alice.get(f"/sessions/{sid}/state").json
    assert state["status"] == Status.QUEUED
    turns = re.findall(r'data-turn="(\d+)"><strong>#\d+</strong> <span class="muted">(\w+)</span> · (\w+)',
                       state["turns_html"])
    assert turns == [("1", "prompt", "completed"), ("2", "follow_up", "queued")]
    assert "agent 3.0s" in state["turns_html"]


def test_message_cancel_and_complete(world):
    sid = make_session(world)
    alice = world["as_"]("alice")
    assert alice.post(f"/sessions/{sid}/message", {"text": "and the docs"}).status_code == 302
    assert Turn.select().where(Turn.session == sid).count() == 2
    assert Session.get_by_id(sid).status == Status.QUEUED
    assert alice.post(f"/sessions/{sid}/cancel").status_code == 302
    assert Session.get_by_id(sid).status == Status.CANCELLED
    r = alice.post(f"/sessions/{sid}/cancel")
    assert r.status_code == 400 and "already cancelled" in r.get_data(as_text=True)


def test_diff_view_comments_send_and_pr(world):
    sid = make_session(world)
    alice = world["as_"]("alice")
    page = alice.get(f"/sessions/{sid}/diff").get_data(as_text=True)
    assert "app.py" in page and 'data-line="2" data-side="new"' in page and 'data-line="2" data-side="old"' in page
    assert alice.post(f"/sessions/{sid}/comments", {"path": "app.py", "line": "2", "side": "new",
                                                     "body": "keep a docstring"}).status_code == 302
    page = alice.get(f"/sessions/{sid}/diff?file=app.py").get_data(as_text=True)
    assert "keep a docstring" in page and "Send comments (1)" in page
    r = alice.post(f"/sessions/{sid}/comments", {"path": "nope.py", "line": "1", "body": "x"})
    assert r.status_code == 400
    assert alice.post(f"/sessions/{sid}/comments/send").status_code == 302
    turn = Turn.get((Turn.session == sid) & (Turn.number == 2))
    assert turn.source == "comments" and "app.py:2" in turn.message and "keep a docstring" in turn.message
    assert alice.post(f"/sessions/{sid}/pr").status_code == 302
    page = alice.get(f"/sessions/{sid}/diff").get_data(as_text=True)
    assert 'id="pr-link" href="/repos/acme/api/merge_requests/1"' in page and 'id="create-pr"' not in page


def test_egress_tab_shows_the_sessions_decisions_only(world):
    from netpolicy import audit

    sid, other = make_session(world), make_session(world)
    audit.record(session_id=sid, sandbox_id="sb-1", client="10.0.0.2", source="proxy", host="pypi.org", port=443,
                 method="CONNECT", verdict="allow", reason="in the default list")
    audit.record(session_id=other, client="10.0.0.3", source="dns", host="evil.example", verdict="deny", reason="x")
    page = world["as_"]("alice").get(f"/sessions/{sid}/egress").get_data(as_text=True)
    assert "pypi.org:443" in page and "evil.example" not in page


def test_environments_add_edit_validate_and_default(world):
    alice = world["as_"]("alice")
    form = {"name": "dev", "network_level": "custom", "domains": "*.example.com\r\npypi.org",
            "include_defaults": "on", "variables": "A=1\r\n", "vcpus": "2"}
    assert alice.post("/environments/new", form).status_code == 302
    env = Environment.get(Environment.name == "dev")
    assert env.domains == ["*.example.com", "pypi.org"] and env.include_defaults and env.vcpus == 2 and env.is_default
    bad = alice.post(f"/environments/{env.id}", {**form, "variables": "A=1\nbroken line\n"})
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "line 2" in text and "broken line" in text  # what was typed is kept
    bad = alice.post(f"/environments/{env.id}", {**form, "domains": "exa*mple.com"})
    assert bad.status_code == 400 and 'id="form-error"' in bad.get_data(as_text=True)
    assert "exa*mple.com" in bad.get_data(as_text=True)
    assert alice.post("/environments/new", {"name": "second", "network_level": "none"}).status_code == 302
    second = Environment.get(Environment.name == "second")
    assert alice.post(f"/environments/{second.id}/default").status_code == 302
    assert Environment.get_by_id(second.id).is_default and not Environment.get_by_id(env.id).is_default
    listed = alice.get("/environments").get_data(as_text=True)
    assert "*.example.com" in listed
    bob = world["as_"]("bob")
    assert "*.example.com" not in bob.get("/environments").get_data(as_text=True)
    assert bob.get(f"/environments/{env.id}").status_code == 404
    assert bob.post(f"/environments/{env.id}", form).status_code == 404
    assert bob.post(f"/environments/{env.id}/default").status_code == 404


ADMIN_PAGES = ["/admin/users", "/admin/teams", "/admin/repositories", "/admin/credentials"]


def test_admin_pages_are_404_for_non_admins(world):
    for who in ("alice", "eve"):
        b = world["as_"](who)
        for path in ADMIN_PAGES:
            assert b.get(path).status_code == 404
        assert b.post("/admin/users", {"username": "x", "password": "y" * 10}).status_code == 404
        assert b.post("/admin/credentials", {"host": "api.anthropic.com", "key": "k"}).status_code == 404
        assert b.post(f"/admin/repositories/{world['repo'].id}/credential",
                      {"credential_kind": "none"}).status_code == 404
    assert not User.select().where(User.username == "x").exists()
    assert Repository.get_by_id(world["repo"].id).credential_secret == "ghp_SECRET"


def test_admin_users_and_teams(world):
    admin = world["as_"]("admin")
    for path in ADMIN_PAGES:
        assert admin.get(path).status_code == 200
    assert admin.post("/admin/users", {"username": "carol", "password": "short"}).status_code == 400
    assert admin.post("/admin/users", {"username": "carol", "password": "long enough pw"}).status_code == 302
    carol = User.get(User.username == "carol")
    assert carol.password_hash.startswith(("scrypt:", "pbkdf2:")) and not carol.is_admin
    assert admin.post("/admin/teams", {"name": "ops"}).status_code == 302
    ops = Team.get(Team.name == "ops")
    assert admin.post(f"/admin/teams/{ops.id}/members", {"username": "carol", "action": "add"}).status_code == 302
    assert TeamMember.select().where((TeamMember.team == ops) & (TeamMember.user == carol)).exists()
    assert admin.post(f"/admin/users/{carol.id}", {"is_admin": "1"}).status_code == 302
    assert User.get_by_id(carol.id).is_admin


def test_repository_credentials_are_write_only(world):
    admin = world["as_"]("admin")
    assert "ghp_SECRET" not in admin.get("/admin/repositories").get_data(as_text=True)
    r = admin.post("/admin/repositories", {"name": "acme/web", "url": "https://git.example/acme/web.git",
                                           "credential_kind": "token", "credential_secret": "tok_NEW_SECRET",
                                           "forge": "none"})
    assert r.status_code == 302
    assert Repository.get(Repository.name == "acme/web").credential_secret == "tok_NEW_SECRET"
    bad = admin.post("/admin/repositories", {"name": "bad name!", "url": "x", "credential_secret": "tok_TYPED"})
    assert bad.status_code == 400 and "tok_TYPED" not in bad.get_data(as_text=True)
    rid = world["repo"].id
    assert admin.post(f"/admin/repositories/{rid}/credential", {"credential_kind": "token",
                                                                "credential_secret": "ghp_ROTATED"}).status_code == 302
    assert Repository.get_by_id(rid).credential_secret == "ghp_ROTATED"
    page = admin.get("/admin/repositories").get_data(as_text=True)
    assert "ghp_ROTATED" not in page and "tok_NEW_SECRET" not in page


def test_model_credentials_file_is_written_0600_and_never_shown(world):
    admin = world["as_"]("admin")
    path = world["cfg"].credentials_file
    assert admin.post("/admin/credentials", {"host": "api.anthropic.com", "key": "sk-ant-SECRET\"x"}).status_code == 302
    import os

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "rb") as f:
        assert tomllib.load(f) == {"api.anthropic.com": {"x-api-key": 'sk-ant-SECRET"x'}}
    from netpolicy.credentials import load_credentials

    assert load_credentials(path)["api.anthropic.com"] == {"x-api-key": 'sk-ant-SECRET"x'}
    page = admin.get("/admin/credentials").get_data(as_text=True)
    assert "sk-ant-SECRET" not in page and "configured" in page
    assert admin.post("/admin/credentials", {"host": "api.anthropic.com", "key": "a\nb"}).status_code == 400
    assert admin.post("/admin/credentials", {"host": "evil.example", "key": "k"}).status_code == 400
    assert admin.post("/admin/credentials", {"host": "api.anthropic.com", "action": "remove"}).status_code == 302
    with open(path, "rb") as f:
        assert tomllib.load(f) == {}


def test_vendor_assets_are_served_from_npm_and_nothing_else(world):
    from webui.console.assets import NPM

    b = world["as_"](None)
    if not (NPM / "@xterm/xterm/lib/xterm.js").is_file():
        pytest.skip("npm assets not installed (scripts/setup runs npm install)")
    assert b.get("/assets/vendor/xterm.js").status_code == 200
    assert b.get("/assets/vendor/xterm.css").status_code == 200
    assert b.get("/assets/vendor/..%2Fpackage.json").status_code == 404
    assert b.get("/assets/vendor/package.json").status_code == 404


def test_pages_use_no_cdn(world):
    sid = make_session(world)
    alice = world["as_"]("alice")
    for path in ["/", "/sessions/new", f"/sessions/{sid}", f"/sessions/{sid}/diff", f"/sessions/{sid}/terminal"]:
        html = alice.get(path).get_data(as_text=True)
        assert not re.search(r'(src|href)="(https?:)?//', html), path


def test_an_answer_only_session_shows_the_answer_and_why_there_is_no_pr(world):
    from appliance.sessions.stream import emit

    sid = make_session(world, with_diff=False)
    turn = Turn.get(Turn.session == sid)
    Turn.update(status="completed").where(Turn.id == turn.id).execute()  # commit_sha None: nothing pushed
    Session.update(status=Status.IDLE).where(Session.id == sid).execute()
    emit(sid, "turn_result", {"ok": True, "summary": "add() subtracts: it returns a - b."}, turn)
    alice = world["as_"]("alice")
    page = alice.get(f"/sessions/{sid}/diff").get_data(as_text=True)
    assert re.search(r'<button id="create-pr" disabled title="the session changed no files', page)
    assert "ask for a change in a follow-up" in page
    assert 'id="answer"' in page and "it returns a - b." in page
    assert "answered, no file changes" in alice.get(f"/sessions/{sid}").get_data(as_text=True)
    assert "answered, no file changes" in alice.get(f"/sessions/{sid}/state").json["turns_html"]


def test_a_session_with_a_pushed_diff_may_create_a_pr(world):
    sid = make_session(world)
    Turn.update(status="completed", commit_sha="abc123").where(Turn.session == sid).execute()
    page = world["as_"]("alice").get(f"/sessions/{sid}/diff").get_data(as_text=True)
    assert '<button id="create-pr" >' in page or '<button id="create-pr">' in page
    assert 'id="pr-blocked"' not in page


def test_diff_view_shows_comments_moved_and_outdated_on_a_later_turn(world):
    sid = make_session(world)
    alice = world["as_"]("alice")
    assert alice.post(f"/sessions/{sid}/comments", {"path": "app.py", "line": "2", "side": "new",
                                                     "body": "check the sign"}).status_code == 302
    assert alice.post(f"/sessions/{sid}/comments", {"path": "app.py", "line": "1", "side": "new",
                                                     "body": "type hints please"}).status_code == 302
    second = Turn.create(session=sid, number=2, message="more", status=TurnStatus.COMPLETED)
    DiffFile.create(session=sid, turn=second, path="app.py", change="modified", added=3, removed=1,
                    patch="@@ -1,2 +1,4 @@\n-def add(a, b):\n+def add(a: int, b: int) -> int:\n+    # sum\n+\n"
                          "     return a + b\n")
    page = alice.get(f"/sessions/{sid}/diff").get_data(as_text=True)
    outdated = page[page.index('id="outdated-comments"'):page.index('class="diff-grid"')]
    assert "type hints please" in outdated and "def add(a, b):" in outdated and "check the sign" not in outdated
    after_line_4 = page[page.index('data-line="4" data-side="new"'):]
    assert "check the sign" in after_line_4.split('class="comment-row"', 1)[1].split("</tr>", 1)[0]
    assert "(written on line 2 of turn #1)" in page
    # on turn 1's diff both sit where they were written, none outdated
    first = alice.get(f"/sessions/{sid}/diff?turn=1").get_data(as_text=True)
    assert 'id="outdated-comments"' not in first and "(written on line" not in first
    assert first.index('data-line="2" data-side="new"') < first.index("check the sign")
