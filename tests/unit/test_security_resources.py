"""Security review, hole 5: any user could ask for unbounded guests (memory 10,000,000 MB, disk
1,000,000 GB, 4,096 vCPUs), and admission counted every session at the default memory.

Each test is one attack from the review (issue 11), through the real API, console, sandbox manager
and engine on SQLite (libvirt's test driver stands in for nothing here: no guest is started).
"""

from __future__ import annotations

import threading

import pytest
from werkzeug.security import generate_password_hash

from appliance.accounts.models import ApiToken, User
from appliance.environments.models import Environment
from appliance.errors import Invalid
from appliance.repos.models import Repository
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sandbox.manager import SandboxManager, SandboxRequest
from appliance.services import Services
from appliance.sessions.engine import Engine, total_memory_mb
from appliance.sessions.models import Session, Status, Turn
from appliance.sessions.service import NewSession
from webui import create_app

from helpers import make_config

HUGE = [("memory_mb", 10_000_000), ("disk_gb", 1_000_000), ("vcpus", 4096)]


@pytest.fixture
def api(db, cfg):
    alice = User.create(username="alice", password_hash=generate_password_hash("pw"))
    token = ApiToken.issue(alice)
    client = create_app(Services.build(cfg), test_config={"TESTING": True}).test_client()
    return lambda method, path, **kw: getattr(client, method)(
        f"/api/v1{path}", headers={"Authorization": f"Bearer {token}"}, **kw)


@pytest.mark.parametrize("field,value", HUGE)
def test_an_environment_cannot_ask_for_a_huge_guest(api, cfg, field, value):
    r = api("post", "/environments", json={"name": "big", field: value})
    assert r.status_code == 400
    assert field in r.json["error"] and str(getattr(cfg, f"max_{field}")) in r.json["error"]
    assert r.json.get("hint")
    assert Environment.select().count() == 0


def test_an_existing_environment_cannot_be_grown_past_the_maximum(api, cfg):
    env_id = api("post", "/environments", json={"name": "dev", "memory_mb": 2048}).json["id"]
    r = api("patch", f"/environments/{env_id}", json={"memory_mb": cfg.max_memory_mb + 1})
    assert r.status_code == 400 and "memory_mb" in r.json["error"]
    assert Environment.get_by_id(env_id).memory_mb == 2048


def test_the_maximums_are_settings(db, tmp_path):
    cfg = make_config(tmp_path / "s2", max_memory_mb=4096, max_vcpus=2, max_disk_gb=20)
    alice = User.create(username="alice")
    from appliance.environments.service import save_environment
    from appliance.guest_limits import GuestLimits

    with pytest.raises(Invalid, match="4096"):
        save_environment(alice, None, {"name": "x", "memory_mb": 4097}, limits=GuestLimits.from_config(cfg))
    assert save_environment(alice, None, {"name": "x", "memory_mb": 4096},
                            limits=GuestLimits.from_config(cfg)).memory_mb == 4096


def test_a_guest_over_the_maximum_is_never_created(db, tmp_path):
    """An environment saved before an admin lowered a maximum, or `appliance sandbox create`:
    the sandbox manager refuses before anything is made."""
    cfg = make_config(tmp_path / "s3", max_memory_mb=4096)
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    manager = SandboxManager(cfg, Hypervisor(f"test://{node}"), egress=object())
    with pytest.raises(Invalid, match="memory_mb"):
        manager.create(SandboxRequest(memory_mb=10_000_000))
    assert manager.list(include_ended=True) == []


def test_admission_counts_each_sessions_real_memory(db, tmp_path):
    """Sessions of 6,000 MB each on a host with 10,000 MB for guests: one runs, the second waits
    (counted at the default 1,024 MB, all three were admitted)."""
    cfg = make_config(tmp_path / "s4", host_reserved_memory_mb=max(0, total_memory_mb() - 10_000))
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    engine = Engine(cfg, SandboxManager(cfg, Hypervisor(f"test://{node}"), egress=object()))
    release = threading.Event()

    class Holding:
        """A turn that stays running until the test ends (the real runner boots guests)."""

        def run(self, turn_id):
            sid = Turn.get_by_id(turn_id).session_id
            Session.update(status=Status.RUNNING).where(Session.id == sid).execute()
            release.wait(30)

    engine.runner = Holding()
    alice = User.create(username="alice")
    Repository.create(name="acme/app", url="/srv/app.git")
    Environment.create(owner=alice, name="big", memory_mb=6000, is_default=True)
    for prompt in ("one", "two", "three"):
        engine.service.create(alice, NewSession("acme/app", prompt, agent="command", command="true"))
    try:
        engine.dispatch_once()
        engine.dispatch_once()
        assert len(engine.running_sessions()) == 1
    finally:
        release.set()
        for worker in list(engine._workers.values()):
            worker.join(10)


def test_an_admin_lowers_the_maximum_on_the_console_and_it_holds(db, cfg):
    from appliance.environments.service import save_environment
    from appliance.guest_limits import GuestLimits

    for name, admin in (("root", True), ("alice", False)):
        User.create(username=name, is_admin=admin, password_hash=generate_password_hash("a long password"))
    app = create_app(Services.build(cfg), test_config={"TESTING": True})

    def signed_in(who):
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
        assert client.post("/login", data={"username": who, "password": "a long password",
                                           "csrf_token": csrf}).status_code == 302
        csrf = client.get("/environments").get_data(as_text=True).split('name="csrf-token" content="')[1].split('"')[0]
        return client, csrf

    alice, alice_csrf = signed_in("alice")
    assert alice.post("/admin/limits", data={"memory_mb": "999999", "csrf_token": alice_csrf}).status_code == 404
    root, csrf = signed_in("root")
    assert root.post("/admin/limits", data={"memory_mb": "4096", "csrf_token": csrf}).status_code == 302
    assert "4096" in root.get("/admin/limits").get_data(as_text=True)
    limits = GuestLimits.from_config(cfg)
    assert (limits.memory_mb, limits.vcpus) == (4096, cfg.max_vcpus)
    with pytest.raises(Invalid, match="4096"):
        save_environment(User.get(User.username == "alice"), None, {"name": "x", "memory_mb": 8192}, limits=limits)
    bad = root.post("/admin/limits", data={"memory_mb": "16", "csrf_token": csrf})
    assert bad.status_code == 400 and "below the default" in bad.get_data(as_text=True)
