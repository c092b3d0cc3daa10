"""Attack tests for the routes in webui/me.py, webui/transcript.py, webui/terminal.py: anonymous → 401, another user → 404 (even a
team mate or the public, for the owner-only routes), owner and admin → 200."""

from __future__ import annotations

import uuid

import pytest

from appliance.accounts.models import ApiToken, Team, TeamMember, User
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Session
from appliance.sessions.transcripts import store as store_transcript
from appliance.sessions.transcripts import stored_path as stored_transcript_path
from webui import create_app

from helpers import schema_checked_client


@pytest.fixture
def env(db, cfg):
    users = {n: User.create(username=n, is_admin=(n == "admin")) for n in ("alice", "bob", "eve", "admin")}
    team = Team.create(name="core")
    for n in ("alice", "bob"):
        TeamMember.create(team=team, user=users[n])
    Repository.create(name="acme/api", url="/srv/api.git")
    tokens = {n: ApiToken.issue(u) for n, u in users.items()}
    app = create_app(Services.build(cfg))
    client = schema_checked_client(app)

    def call(who, path, **kw):
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
        headers.update(kw.pop("headers", {}))
        return client.get(path, headers=headers, **kw)

    r = call("alice", "/api/v1/repositories")
    assert r.status_code == 200
    sid = client.post("/api/v1/sessions", json={"repository": "acme/api", "prompt": "Fix it", "visibility": "public"},
                      headers={"Authorization": f"Bearer {tokens['alice']}"}).json["id"]
    Session.update(agent_session_id=str(uuid.uuid4())).where(Session.id == sid).execute()
    store_transcript(cfg.state_dir, sid, b'{"type":"user"}\n')
    return dict(call=call, sid=sid, client=client, cfg=cfg)


def test_me(env):
    assert env["call"](None, "/api/v1/me").status_code == 401
    assert env["call"](None, "/api/v1/me", headers={"Authorization": "Bearer apl_forged"}).status_code == 401
    r = env["call"]("bob", "/api/v1/me")
    assert r.status_code == 200 and r.json["username"] == "bob" and r.json["is_admin"] is False


@pytest.mark.parametrize("suffix", ["/transcript", "/terminal"])
def test_owner_only_routes(env, suffix):
    path = f"/api/v1/sessions/{env['sid']}{suffix}"
    # the terminal is a websocket route: refused before the handshake, as plain HTTP
    ws = {"headers": {"Upgrade": "websocket", "Connection": "Upgrade"}} if suffix == "/terminal" else {}
    assert env["call"](None, path, **ws).status_code == 401
    for who in ("bob", "eve"):  # a team mate and a stranger, although the session is public
        r = env["call"](who, path, **ws)
        assert r.status_code == 404, who
        assert "Fix it" not in r.get_data(as_text=True)
    assert env["call"]("alice", "/api/v1/sessions/ses-nothere" + suffix, **ws).status_code == 404


def test_transcript_for_owner_and_admin(env):
    for who in ("alice", "admin"):
        r = env["call"](who, f"/api/v1/sessions/{env['sid']}/transcript")
        assert r.status_code == 200 and r.json["transcript"] == '{"type":"user"}\n'
        assert r.json["agent"] == "claude-code"


def test_no_transcript_is_404_with_a_reason(env):
    stored_transcript_path(env["cfg"].state_dir, env["sid"]).unlink()
    r = env["call"]("alice", f"/api/v1/sessions/{env['sid']}/transcript")
    assert r.status_code == 404 and "no agent transcript" in r.json["error"]


def test_transcript_path_refuses_traversal(cfg):
    with pytest.raises(ValueError):
        stored_transcript_path(cfg.state_dir, "../../etc/passwd")
