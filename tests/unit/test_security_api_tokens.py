"""Security review, hole 14: API tokens never expired, could not be revoked, and a password change
left them working. Tokens now have names and an expiry; their owner revokes them on the console's
API tokens page (which `appliance login` points to), an admin with `appliance user token --revoke`,
and a password change revokes them all.

Each test is one attack from the review (issue 11) through the real API, console and CLI handler
on SQLite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re

import pytest
from werkzeug.security import generate_password_hash

from appliance.accounts import tokens as api_tokens
from appliance.accounts.models import ApiToken, User
from appliance.cli import user_cmd
from appliance.errors import Invalid, NotFound
from appliance.services import Services
from webui import create_app

PASSWORD = "correct horse battery"


@pytest.fixture
def world(db, cfg):
    users = {n: User.create(username=n, is_admin=(n == "root"), password_hash=generate_password_hash(PASSWORD))
             for n in ("alice", "bob", "root")}
    app = create_app(Services.build(cfg), test_config={"TESTING": True})
    return {"users": users, "app": app, "cfg": cfg}


def _api_status(world, token: str) -> int:
    return world["app"].test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


class Browser:
    def __init__(self, app, who: str):
        self.client = app.test_client()
        page = self.client.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert self.client.post("/login", data={"username": who, "password": PASSWORD,
                                                "csrf_token": csrf}).status_code == 302
        page = self.client.get("/tokens").get_data(as_text=True)
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def post(self, path, data):
        return self.client.post(path, data={**data, "csrf_token": self.csrf})


def _cli(db, argv):
    parser = argparse.ArgumentParser()
    user_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)

    class Ctx:
        pass

    ctx = Ctx()
    ctx.db = db
    return args.handler(args, ctx)


def test_a_token_stops_working_when_it_expires(world):
    token = api_tokens.issue(world["users"]["alice"], "laptop", days=30)
    assert _api_status(world, token) == 200
    ApiToken.update(expires_at=dt.datetime(2000, 1, 1)).execute()  # thirty days later
    assert _api_status(world, token) == 401


def test_every_token_has_a_name_and_an_expiry(world):
    token = api_tokens.issue(world["users"]["alice"], "laptop")
    row = ApiToken.get()
    assert row.name == "laptop" and row.expires_at is not None
    assert (row.expires_at - row.created_at).days == api_tokens.DEFAULT_DAYS
    with pytest.raises(Invalid, match="name"):
        api_tokens.issue(world["users"]["alice"], "  ")
    with pytest.raises(Invalid, match="days"):
        api_tokens.issue(world["users"]["alice"], "forever", days=100_000)
    assert _api_status(world, token) == 200


def test_an_admin_revokes_a_token_from_the_cli(world, db, capsys):
    assert _cli(db, ["user", "token", "alice", "--label", "laptop"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert _api_status(world, token) == 200
    assert _cli(db, ["user", "token", "alice", "--revoke", "laptop"]) == 0
    assert "revoked 1" in capsys.readouterr().out
    assert _api_status(world, token) == 401
    with pytest.raises(NotFound):
        _cli(db, ["user", "token", "alice", "--revoke", "laptop"])


def test_the_owner_manages_tokens_on_the_console_page(world):
    alice = Browser(world["app"], "alice")
    page = alice.post("/tokens", {"name": "ci", "days": "7"}).get_data(as_text=True)
    token = re.search(r"(apl_[A-Za-z0-9_\-]+)", page).group(1)  # shown once, on the page that made it
    assert _api_status(world, token) == 200
    listed = alice.client.get("/tokens").get_data(as_text=True)
    assert "ci" in listed and token not in listed
    row = ApiToken.get(ApiToken.name == "ci")
    # bob cannot revoke alice's token: for him it does not exist
    assert Browser(world["app"], "bob").post(f"/tokens/{row.id}/revoke", {}).status_code == 404
    assert _api_status(world, token) == 200
    assert alice.post(f"/tokens/{row.id}/revoke", {}).status_code == 302
    assert _api_status(world, token) == 401


def test_a_password_change_revokes_every_token(world):
    alice = world["users"]["alice"]
    tokens = [api_tokens.issue(alice, name) for name in ("laptop", "ci")]
    other = api_tokens.issue(world["users"]["bob"], "laptop")
    root = Browser(world["app"], "root")
    assert root.post(f"/admin/users/{alice.id}", {"password": "a brand new password"}).status_code == 302
    assert [_api_status(world, t) for t in tokens] == [401, 401]
    assert _api_status(world, other) == 200
