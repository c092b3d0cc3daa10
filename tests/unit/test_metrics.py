"""/metrics: Prometheus text; admins' tokens anywhere, loopback callers without a proxy header."""

from __future__ import annotations

import pytest

from appliance.accounts.models import ApiToken, User
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Session, Turn
from netpolicy.audit import EgressEvent
from webui import create_app


@pytest.fixture
def client(db, cfg):
    app = create_app(Services.build(cfg))
    return app.test_client()


def seed():
    alice = User.create(username="alice")
    repo = Repository.create(name="acme/api", url="/srv/api.git")
    for i, status in enumerate(["queued", "queued", "running", "completed"]):
        s = Session.create(owner=alice, repository=repo, base_branch="main", work_branch=f"w{i}", status=status)
        Turn.create(session=s, number=1, message="x", timings={"boot": 3.0 + i * 20, "clone": 0.5})
    Sandbox.create(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=1, state="running")
    Sandbox.create(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=1, state="destroyed")
    for verdict in ("deny", "deny", "allow"):
        EgressEvent.create(client="10.213.0.2", source="proxy", verdict=verdict, reason="r")
    return alice


def test_metrics_text(client):
    seed()
    r = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert 'appliance_sessions{status="queued"} 2' in text
    assert 'appliance_sessions{status="failed"} 0' in text
    assert "appliance_queue_length 2" in text
    assert "appliance_sandboxes_running 1" in text
    assert 'appliance_turn_boot_seconds_bucket{le="5"} 1' in text
    assert 'appliance_turn_boot_seconds_bucket{le="+Inf"} 4' in text
    assert "appliance_turn_boot_seconds_count 4" in text
    assert 'appliance_turn_clone_seconds_bucket{le="1"} 4' in text
    assert 'appliance_egress_denied_total{source="proxy"} 2' in text
    for line in text.splitlines():  # every sample line is `name{labels} number`
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_who_may_read_metrics(client):
    alice = seed()
    admin = User.create(username="root", is_admin=True)
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                      headers={"X-Forwarded-For": "192.0.2.7"}).status_code == 403
    user_token = {"Authorization": f"Bearer {ApiToken.issue(alice)}"}
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}, headers=user_token).status_code == 403
    admin_token = {"Authorization": f"Bearer {ApiToken.issue(admin)}"}
    assert client.get("/metrics", environ_base=remote, headers=admin_token).status_code == 200
