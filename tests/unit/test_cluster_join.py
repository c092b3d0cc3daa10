"""Joining a worker host: the attacks first. A join token is single-use, expiring, stored only as
its hash, minted by admins only; a missing, wrong, expired or used token gets 401/403 with a clear
message and nothing issued; guessing gets the address blocked; the token is never logged; control
refuses joins while it is one server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest

from appliance.accounts import signin
from appliance.accounts.models import User, hash_token
from appliance.cli.main import main
from appliance.cluster import join as host_join
from appliance.cluster.models import Host, HostCredential, JoinToken
from appliance.db import utcnow
from appliance.redact import RedactingFilter
from appliance.services import Services
from appliance.sessions.service import SessionService
from webui import create_app

from helpers import api_caller, console_login, people

SHARED_DB = "postgresql://appliance:s3cret@10.20.0.1:5432/appliance"


@pytest.fixture
def clustered(cfg):
    return dataclasses.replace(cfg, cluster_mode="on", worker_database_url=SHARED_DB)


@pytest.fixture
def app(db, clustered):
    people()
    return create_app(Services.build(clustered, sessions=SessionService(clustered)), test_config={"TESTING": True})


def mint(clustered, minutes=60):
    return host_join.mint(clustered, "admin", minutes)[0]


def join(app, body, address="10.9.9.9"):
    return app.test_client().post("/api/v1/cluster/join", json=body, environ_base={"REMOTE_ADDR": address})


def test_a_minted_token_joins_once_and_only_its_hash_is_stored(app, clustered):
    token = mint(clustered)
    assert token.startswith("apj_") and len(token) > 40
    row = JoinToken.get()
    assert row.token_hash == hash_token(token) and token not in str(row.__data__)
    r = join(app, {"token": token, "host_id": "worker-b"})
    assert r.status_code == 200, r.json
    body = dict(r.json)
    credential = body.pop("host_credential")
    assert body == {"host_id": "worker-b", "database_url": SHARED_DB, "cluster_mode": "on"}
    assert credential.startswith("aph_") and host_join.host_for(credential) == "worker-b"
    assert HostCredential.get().credential_hash == hash_token(credential), "only its hash is kept"
    row = JoinToken.get()
    assert row.used_by_host == "worker-b" and row.used_at is not None
    again = join(app, {"token": token, "host_id": "worker-c"})
    assert again.status_code == 403 and "already used" in again.json["error"]
    assert "database_url" not in again.json and JoinToken.get().used_by_host == "worker-b"


@pytest.mark.parametrize("body,status,message", [
    ({"host_id": "w1"}, 401, "join token is required"),
    ({"token": "", "host_id": "w1"}, 401, "join token is required"),
    ({"token": "apj_" + "x" * 43, "host_id": "w1"}, 401, "not valid"),
    ({"token": "apl_" + "x" * 43, "host_id": "w1"}, 401, "not valid"),
])
def test_no_or_a_wrong_token_is_refused_and_nothing_issued(app, clustered, body, status, message):
    mint(clustered)  # a real token exists; the guess is not it
    r = join(app, body)
    assert r.status_code == status and message in r.json["error"]
    assert "database_url" not in r.json and r.json["hint"]
    assert JoinToken.get().used_at is None
    assert signin.SigninEvent.get().outcome == signin.BAD_JOIN_TOKEN  # audited against the address


def test_an_expired_token_is_refused(app, clustered):
    token = mint(clustered, minutes=1)
    JoinToken.update(expires_at=utcnow() - dt.timedelta(seconds=1)).execute()
    r = join(app, {"token": token, "host_id": "w1"})
    assert r.status_code == 403 and "expired" in r.json["error"] and "database_url" not in r.json
    assert JoinToken.get().used_at is None


def test_guessing_blocks_the_address_even_for_a_right_token(app, clustered):
    token = mint(clustered)
    limit = clustered.signin_max_failures_per_address
    for i in range(limit):
        assert join(app, {"token": f"apj_guess{i:040d}", "host_id": "w1"}).status_code == 401
    r = join(app, {"token": token, "host_id": "w1"})
    assert r.status_code == 429 and "blocked" in r.json["error"] and int(r.headers["Retry-After"]) > 0
    assert JoinToken.get().used_at is None, "a blocked address uses no token"
    assert join(app, {"token": token, "host_id": "w1"}, address="10.9.9.10").status_code == 200  # another address


def test_a_live_host_id_cannot_be_taken_over(app, clustered):
    Host.create(id="worker-a", capacity=2)
    token = mint(clustered)
    r = join(app, {"token": token, "host_id": "worker-a"})
    assert r.status_code == 409 and "running already" in r.json["error"]
    assert JoinToken.get().used_at is None, "the token stays usable for another name"
    assert join(app, {"token": token, "host_id": "bad id;rm"}).status_code == 400


def test_control_on_one_server_refuses_to_join_or_mint_and_says_what_to_set(db, cfg):
    people()
    app = create_app(Services.build(cfg, sessions=SessionService(cfg)), test_config={"TESTING": True})
    JoinToken.create(token_hash=hash_token("apj_" + "y" * 43), expires_at=utcnow() + dt.timedelta(hours=1))
    r = join(app, {"token": "apj_" + "y" * 43, "host_id": "w1"})
    assert r.status_code == 409 and "cluster_mode" in r.json["hint"] and "postgresql://" in r.json["hint"]
    assert JoinToken.get().used_at is None
    admin = User.get(User.username == "admin")
    assert api_caller(app, admin)("post", "/cluster/join-tokens", json={}).status_code == 409


def test_a_local_only_database_url_is_not_handed_out(app, clustered, cfg):
    local = dataclasses.replace(clustered, worker_database_url="", database_url="postgresql://appliance@localhost/a")
    token = mint(clustered)
    with pytest.raises(host_join.ApplianceError, match="no address a worker host can reach") as e:
        host_join.redeem(local, token, "w1", "10.1.1.1")
    assert "worker_database_url" in e.value.hint and JoinToken.get().used_at is None


def test_only_admins_mint_tokens_through_the_api(app):
    alice = User.get(User.username == "alice")
    assert api_caller(app, alice)("post", "/cluster/join-tokens", json={}).status_code == 404
    assert api_caller(app, None)("post", "/cluster/join-tokens", json={}).status_code == 401
    assert JoinToken.select().count() == 0
    r = api_caller(app, User.get(User.username == "admin"))("post", "/cluster/join-tokens", json={"ttl_minutes": 30})
    assert r.status_code == 201 and r.json["token"].startswith("apj_") and r.headers["Cache-Control"] == "no-store"
    assert f"appliance worker --join http://localhost --token {r.json['token']}" == r.json["command"]
    assert JoinToken.get().token_hash == hash_token(r.json["token"])
    bad = api_caller(app, User.get(User.username == "admin"))("post", "/cluster/join-tokens", json={"ttl_minutes": 0})
    assert bad.status_code == 400 and "minutes" in bad.json["error"]


def test_only_admins_mint_tokens_on_the_console(app):
    alice, csrf = console_login(app, "alice")
    assert alice.post("/admin/hosts/join-token", data={"csrf_token": csrf}).status_code == 404
    assert app.test_client().post("/admin/hosts/join-token").status_code in (302, 400)
    assert JoinToken.select().count() == 0
    admin, csrf = console_login(app, "admin")
    r = admin.post("/admin/hosts/join-token", data={"csrf_token": csrf, "ttl_minutes": "15"})
    assert r.headers["Cache-Control"] == "no-store"
    page = r.get_data(as_text=True)
    row = JoinToken.get()
    token = next(w for w in page.replace("<", " ").replace(">", " ").split() if w.startswith("apj_"))
    assert row.token_hash == hash_token(token) and row.created_by == "admin"
    assert f"appliance worker --join http://localhost --token {token}" in page
    assert token not in admin.get("/admin/hosts").get_data(as_text=True), "shown once"


def test_the_token_is_never_logged(app, clustered, caplog):
    caplog.set_level(logging.DEBUG)  # SQL statements included
    token = mint(clustered)
    join(app, {"token": token, "host_id": "w1"})
    join(app, {"token": token, "host_id": "w2"})
    join(app, {"token": token + "x", "host_id": "w3"})
    assert caplog.records and token[4:] not in caplog.text
    # and should anyone log one, the daemon's log filter redacts it like an API token
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "worker joined with %s", (token,), None)
    RedactingFilter().filter(record)
    assert token[4:] not in record.getMessage() and "[redacted]" in record.getMessage()


def test_cli_mints_a_token_on_control(db, clustered, monkeypatch, capsys):
    monkeypatch.setattr("appliance.cli.main.Context.config", clustered)
    assert main(["host", "join-token", "--ttl", "30"]) == 0
    out = capsys.readouterr().out
    token = next(w for w in out.split() if w.startswith("apj_"))
    row = JoinToken.get()
    assert row.token_hash == hash_token(token) and row.created_by == "cli"
    assert 29 * 60 <= (row.expires_at - row.created_at).total_seconds() <= 30 * 60
    assert "appliance worker --join http" in out and f"--token {token}" in out
