"""Attacks on the console's password sign-in: brute force against one account, password spraying
from one address, the right password during a lockout; every attempt lands in the audit log, which
admins can read. Lockouts expire: the test moves the recorded attempts into the past (real rows in
a real database) instead of waiting."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from werkzeug.security import generate_password_hash

from appliance.accounts.models import User
from appliance.accounts.signin import SigninEvent
from appliance.services import Services
from webui import create_app

PASSWORD = "correct horse battery"
ATTACKER = "198.51.100.66"


@pytest.fixture
def app(db, cfg):
    cfg = dataclasses.replace(cfg, signin_max_failures=5, signin_max_failures_per_address=8,
                              signin_window=900.0, signin_lockout=600.0)
    app = create_app(Services.build(cfg))
    app.config["TESTING"] = True
    User.create(username="alice", password_hash=generate_password_hash(PASSWORD))
    User.create(username="root", is_admin=True, password_hash=generate_password_hash(PASSWORD))
    return app


def attempt(app, username, password, address=ATTACKER):
    client = app.test_client()
    env = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_overrides=env).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       environ_overrides=env, headers={"User-Agent": "attack-test"})


def age_attempts(seconds):
    for event in SigninEvent.select():
        SigninEvent.update(time=event.time - dt.timedelta(seconds=seconds)).where(SigninEvent.id == event.id).execute()


def test_brute_force_locks_the_account_with_a_clear_message(app):
    for i in range(5):
        assert attempt(app, "alice", f"guess{i}", address=f"192.0.2.{i}").status_code == 401
    r = attempt(app, "alice", "guess5", address="192.0.2.99")  # a new address does not help
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "locked until" in r.get_data(as_text=True)


def test_a_locked_account_refuses_the_right_password_until_the_lock_expires(app):
    for i in range(5):
        attempt(app, "alice", f"guess{i}")
    r = attempt(app, "alice", PASSWORD, address="203.0.113.7")
    assert r.status_code == 429 and "session" not in r.headers.get("Set-Cookie", "uid")
    assert "locked" in r.get_data(as_text=True)
    age_attempts(601)  # the lockout (600 s after the last failure) is over
    r = attempt(app, "alice", PASSWORD, address="203.0.113.7")
    assert r.status_code == 302


def test_refusals_while_locked_do_not_extend_the_lock(app):
    for i in range(5):
        attempt(app, "alice", f"guess{i}")
    age_attempts(300)
    for _ in range(3):
        assert attempt(app, "alice", "more").status_code == 429
    age_attempts(301)
    assert attempt(app, "alice", PASSWORD).status_code == 302


def test_spraying_many_accounts_from_one_address_is_blocked(app):
    for i in range(8):  # one guess per account: no account reaches its own limit
        assert attempt(app, f"user{i}", "Winter2026!").status_code == 401
    r = attempt(app, "alice", PASSWORD)  # even a right password from that address
    assert r.status_code == 429 and f"from your address ({ATTACKER})" in r.get_data(as_text=True)
    assert attempt(app, "alice", PASSWORD, address="192.0.2.10").status_code == 302  # others are unaffected


def test_a_success_resets_the_account_count(app):
    for i in range(4):
        attempt(app, "alice", f"guess{i}", address="192.0.2.1")
    assert attempt(app, "alice", PASSWORD, address="192.0.2.1").status_code == 302
    for i in range(4):
        assert attempt(app, "alice", f"again{i}", address="192.0.2.2").status_code == 401


def test_every_attempt_is_audited_and_admins_see_the_log(app):
    attempt(app, "alice", "nope")
    attempt(app, "ghost", "nope")
    attempt(app, "alice", PASSWORD, address="192.0.2.5")
    rows = [(e.username, e.outcome, e.address) for e in SigninEvent.select().order_by(SigninEvent.id)]
    assert rows == [("alice", "wrong_password", ATTACKER), ("ghost", "unknown_user", ATTACKER),
                    ("alice", "ok", "192.0.2.5")]
    assert SigninEvent.get(SigninEvent.outcome == "ok").user.username == "alice"
    assert SigninEvent.get(SigninEvent.outcome == "unknown_user").user is None

    admin = app.test_client()
    page = admin.get("/login", environ_overrides={"REMOTE_ADDR": "192.0.2.9"}).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    admin.post("/login", data={"username": "root", "password": PASSWORD, "csrf_token": token},
               environ_overrides={"REMOTE_ADDR": "192.0.2.9"})
    page = admin.get("/admin/signins").get_data(as_text=True)
    assert "ghost" in page and "unknown user" in page and "wrong password" in page and ATTACKER in page
    assert "ghost" not in admin.get("/admin/signins?username=alice").get_data(as_text=True)

    alice = app.test_client()
    page = alice.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    alice.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert alice.get("/admin/signins").status_code == 404  # not for non-admins
