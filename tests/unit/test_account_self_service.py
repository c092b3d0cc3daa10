"""Accounts people run themselves: their own password and notification settings (console and
API), and admins disabling users. Each action: the user themselves, another user, anonymous."""

from __future__ import annotations

import re

import pytest
from test_console_pages import PASSWORD, Browser
from werkzeug.security import check_password_hash, generate_password_hash

from appliance.accounts.models import ApiToken, User
from appliance.services import Services
from appliance.sessions.service import SessionService
from webui import create_app

from helpers import schema_checked_client

NEW = "a brand new passphrase"


@pytest.fixture
def app(db, cfg):
    for n in ("alice", "bob", "admin"):
        User.create(username=n, is_admin=(n == "admin"), password_hash=generate_password_hash(PASSWORD))
    return create_app(Services.build(cfg, sessions=SessionService(cfg)), test_config={"TESTING": True})


def user(name: str) -> User:
    return User.get(User.username == name)


def api(app, token, method, path, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return getattr(schema_checked_client(app), method)(f"/api/v1{path}", headers=headers, **kw)


# --- 1. own password -------------------------------------------------------------------------------

def test_console_password_change_keeps_this_browser_and_signs_out_the_others(app):
    here, other = Browser(app, "alice"), Browser(app, "alice")
    token = ApiToken.issue(user("alice"))
    r = here.post("/account/password", {"current_password": PASSWORD, "new_password": NEW, "new_password_again": NEW})
    assert r.status_code == 302 and r.headers["Location"].endswith("/account?done=password")
    assert check_password_hash(user("alice").password_hash, NEW)
    assert here.get("/account").status_code == 200  # this browser is still signed in
    assert other.get("/account").status_code == 302  # the other one is back at the sign-in page
    assert "/login" in other.get("/environments").headers["Location"]
    assert api(app, token, "get", "/me").status_code == 401  # tokens made under the old password are revoked


def test_console_password_change_needs_the_current_password(app):
    b = Browser(app, "alice")
    before = user("alice").password_hash
    r = b.post("/account/password", {"current_password": "wrong one!", "new_password": NEW, "new_password_again": NEW})
    assert r.status_code == 403 and "current password is wrong" in r.get_data(as_text=True)
    r = b.post("/account/password", {"current_password": PASSWORD, "new_password": "short", "new_password_again": "short"})
    assert r.status_code == 400 and "at least 8 characters" in r.get_data(as_text=True)
    r = b.post("/account/password", {"current_password": PASSWORD, "new_password": NEW, "new_password_again": NEW + "x"})
    assert r.status_code == 400 and "differ" in r.get_data(as_text=True)
    assert user("alice").password_hash == before


def test_console_password_change_by_another_user_or_anonymous_changes_nothing_of_alice(app):
    before = user("alice").password_hash
    bob = Browser(app, "bob")
    # bob can only ever change his own password: even typing alice's current password changes nothing of hers
    r = bob.post("/account/password", {"current_password": PASSWORD, "new_password": NEW, "new_password_again": NEW})
    assert r.status_code == 302
    assert user("alice").password_hash == before and check_password_hash(user("bob").password_hash, NEW)
    anon = Browser(app, None)
    assert anon.get("/account").status_code == 302 and "/login" in anon.get("/account").headers["Location"]
    r = anon.client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW,
                                                    "new_password_again": NEW})
    assert r.status_code == 400  # no signed-in session: no CSRF token, refused before anything else
    assert user("alice").password_hash == before


def test_api_password_change(app):
    token = ApiToken.issue(user("alice"))
    r = api(app, token, "post", "/me/password", json={"current_password": "nope nope", "new_password": NEW})
    assert r.status_code == 403 and "current password is wrong" in r.json["error"]
    r = api(app, token, "post", "/me/password", json={"current_password": PASSWORD})
    assert r.status_code == 400 and "'new_password' is required" in r.json["error"]
    r = api(app, token, "post", "/me/password", json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 200 and r.json["tokens_revoked"] is True
    assert check_password_hash(user("alice").password_hash, NEW)
    assert api(app, token, "get", "/me").status_code == 401  # the token died with the old password
    r = api(app, None, "post", "/me/password", json={"current_password": NEW, "new_password": PASSWORD})
    assert r.status_code == 401 and check_password_hash(user("alice").password_hash, NEW)


# --- 2. notification settings ----------------------------------------------------------------------

def test_account_page_saves_notification_settings(app):
    b = Browser(app, "alice")
    r = b.post("/account/notifications", {"webhook_url": "https://93.184.216.34/hook", "email": "alice@example.com",
                                          "notify_browser": "on"})
    assert r.status_code == 302
    alice = user("alice")
    assert (alice.webhook_url, alice.email, alice.notify_browser) == (
        "https://93.184.216.34/hook", "alice@example.com", True)
    page = b.get("/account").get_data(as_text=True)
    assert 'value="alice@example.com"' in page and 'id="notify-browser" checked' in page
    # a session page of a user who asked for browser notifications tells the script so
    assert 'data-notify-turns="1"' in page
    assert 'data-notify-turns' not in Browser(app, "bob").get("/account").get_data(as_text=True)
    # the API shows and sets the same
    token = ApiToken.issue(user("alice"))
    assert api(app, token, "get", "/me").json["notify_browser"] is True
    assert api(app, token, "patch", "/me", json={"notify_browser": False}).json["notify_browser"] is False


def test_account_page_refuses_a_bad_notification_setting_and_keeps_the_old_ones(app):
    b = Browser(app, "alice")
    b.post("/account/notifications", {"email": "alice@example.com"})
    r = b.post("/account/notifications", {"webhook_url": "http://127.0.0.1:8080/x", "email": "a@b.example, c@d.example"})
    assert r.status_code == 400 and "loopback" in r.get_data(as_text=True)
    r = b.post("/account/notifications", {"email": "a@b.example, c@d.example"})
    assert r.status_code == 400 and "not exactly one e-mail address" in r.get_data(as_text=True)
    assert user("alice").email == "alice@example.com" and user("alice").webhook_url == ""


def test_notification_settings_of_another_user_or_anonymous(app):
    Browser(app, "bob").post("/account/notifications", {"email": "bob@example.com", "notify_browser": "on"})
    alice = user("alice")
    assert (alice.email, alice.notify_browser) == ("", False)  # bob's form sets only bob's
    anon = Browser(app, None)
    assert "/login" in anon.get("/account").headers["Location"]
    assert anon.client.post("/account/notifications", data={"email": "x@example.com"}).status_code == 400
    assert api(app, None, "patch", "/me", json={"email": "x@example.com"}).status_code == 401
    assert User.select().where(User.email == "x@example.com").count() == 0


# --- 5. admins disable users -----------------------------------------------------------------------

def test_disabling_a_user_stops_their_token_and_browser_at_once(app):
    token = ApiToken.issue(user("alice"))
    browser = Browser(app, "alice")
    assert api(app, token, "get", "/me").status_code == 200
    assert browser.get("/account").status_code == 200
    admin = Browser(app, "admin")
    assert admin.post(f"/admin/users/{user('alice').id}", {"disabled": "1"}).status_code == 302
    assert api(app, token, "get", "/me").status_code == 401  # the same token, the very next request
    assert api(app, token, "get", "/sessions").status_code == 401
    assert "/login" in browser.get("/account").headers["Location"]
    page = Browser(app, None).client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    fresh = app.test_client()
    fresh.get("/login")
    r = fresh.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf})
    assert r.status_code in (400, 403)
    # enabled again: the same token works again (nothing was revoked), and so does signing in
    admin.post(f"/admin/users/{user('alice').id}", {"disabled": "0"})
    assert api(app, token, "get", "/me").status_code == 200
    Browser(app, "alice")  # signs in (asserts the redirect)


def test_a_disabled_user_cannot_sign_in(app):
    Browser(app, "admin").post(f"/admin/users/{user('alice').id}", {"disabled": "1"})
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf})
    assert r.status_code == 403 and "disabled" in r.get_data(as_text=True)
    assert client.get("/environments").status_code == 302


def test_only_admins_disable_and_nobody_disables_themselves(app):
    bob = Browser(app, "bob")
    assert bob.post(f"/admin/users/{user('alice').id}", {"disabled": "1"}).status_code == 404
    anon = app.test_client()
    assert anon.post(f"/admin/users/{user('alice').id}", data={"disabled": "1"}).status_code == 400  # CSRF
    assert user("alice").disabled is False
    admin = Browser(app, "admin")
    r = admin.post(f"/admin/users/{user('admin').id}", {"disabled": "1"})
    assert r.status_code == 400 and "cannot disable yourself" in r.get_data(as_text=True)
    assert user("admin").disabled is False


def test_cli_disables_and_enables_a_user(app, cfg, capsys, monkeypatch):
    from appliance.cli.main import main

    monkeypatch.setenv("APPLIANCE_CONFIG", str(cfg.state_dir / "no-such-file.toml"))
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(cfg.state_dir))
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", cfg.database_url)  # SQLite there, or the suite's PostgreSQL
    token = ApiToken.issue(user("alice"))
    assert main(["user", "disable", "alice"]) == 0 and "disabled alice" in capsys.readouterr().out
    assert api(app, token, "get", "/me").status_code == 401
    assert main(["user", "enable", "alice"]) == 0
    assert api(app, token, "get", "/me").status_code == 200
    assert main(["user", "disable", "nobody"]) != 0 and "no user 'nobody'" in capsys.readouterr().err
