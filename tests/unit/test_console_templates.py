"""Admins see the guest templates and the warm pool on the console and through the API, and drop a
template there; everyone else is refused (console 404, API 401 anonymous / 403 non-admin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.accounts.models import User
from appliance.db import utcnow
from appliance.models import GuestTemplate, Sandbox
from appliance.services import Services
from appliance.sessions.service import SessionService
from webui import create_app

from helpers import api_caller, console_login, make_config, people

KEY = "0123456789abcdef"


@pytest.fixture
def conf(cfg, tmp_path):
    return make_config(cfg.state_dir, database_url=cfg.database_url, template_dir=str(tmp_path / "shm" / "tpl"),
                       guest_templates="on", warm_pool="2")


@pytest.fixture
def app(db, conf):
    people()
    return create_app(Services.build(conf, sessions=SessionService(conf)), test_config={"TESTING": True})


@pytest.fixture
def ram(conf):
    """A ready template with its files, one live clone of it, and two pool slots."""
    ram = Path(conf.template_dir) / f"{KEY}-a1b2c3"
    ram.mkdir(parents=True)
    (ram / "ram").write_bytes(b"\1" * (3 * 1024 * 1024))
    (ram / "state").write_bytes(b"\2" * 100)
    disk = conf.state_dir / "templates" / f"{KEY}-a1b2c3"
    disk.mkdir(parents=True)
    (disk / "disk.qcow2").write_bytes(b"\3" * 4096)
    (disk / "template.json").write_text("{}\n")
    GuestTemplate.create(key=KEY, profile="minimal", image_hash="abc123def4567890", domain_type="qemu", vcpus=1,
                         memory_mb=512, disk_gb=4, qemu_version="7.2.0", state="ready", made_at=utcnow(),
                         build_seconds=31.5)
    GuestTemplate.create(key="fedcba9876543210", profile="minimal", image_hash="abc", domain_type="qemu", vcpus=1,
                         memory_mb=512, disk_gb=4, qemu_version="7.2.0", state="failed",
                         error="the template guest did not come up")
    for purpose, session in (("session", "s1"), ("pool", None), ("pool", None)):
        Sandbox.create(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=4, state="running",
                       purpose=purpose, session_id=session, template_key=f"{KEY}-a1b2c3")
    return ram


def test_admins_see_the_templates_and_the_pool_and_drop_one(app, ram):
    admin, csrf = console_login(app, "admin")
    page = admin.get("/admin/templates").get_data(as_text=True)
    assert f'data-template="{KEY}"' in page and "ready" in page and "31.5 s" in page
    assert "3 MiB" in page, "its size on this host"
    assert "the template guest did not come up" in page, "a failed one says why"
    row = page.split(f'data-template="{KEY}"')[1].split("</tr>")[0]
    assert '<td class="users">3</td>' in row, "the clone and the two pool slots use it"
    assert '<td class="waiting">2</td>' in page.split('id="pool"')[1]
    assert "Guest templates</a>" in admin.get("/admin/hosts").get_data(as_text=True), "linked from the admin nav"

    r = admin.post(f"/admin/templates/{KEY}/drop", data={"csrf_token": csrf})
    assert r.status_code == 302
    assert GuestTemplate.get(GuestTemplate.key == KEY).state == "dropped" and not ram.exists()
    assert admin.post("/admin/templates/nope/drop", data={"csrf_token": csrf}).status_code == 404


def test_a_drop_without_the_forms_token_changes_nothing(app, ram):
    admin, _ = console_login(app, "admin")
    assert admin.post(f"/admin/templates/{KEY}/drop").status_code == 400
    assert GuestTemplate.get(GuestTemplate.key == KEY).state == "ready" and ram.exists()


def test_the_templates_page_is_for_admins_only(app, ram):
    alice, csrf = console_login(app, "alice")
    assert alice.get("/admin/templates").status_code == 404
    assert alice.post(f"/admin/templates/{KEY}/drop", data={"csrf_token": csrf}).status_code == 404
    anonymous = app.test_client()
    assert anonymous.get("/admin/templates").status_code == 302  # to the sign-in page
    assert anonymous.post(f"/admin/templates/{KEY}/drop").status_code in (302, 400)
    assert GuestTemplate.get(GuestTemplate.key == KEY).state == "ready" and ram.exists()


def test_the_api_lists_and_drops_for_admins_only(app, ram):
    admin = api_caller(app, User.get(User.username == "admin"))
    listed = admin("get", "/admin/templates")
    assert listed.status_code == 200
    by_key = {t["key"]: t for t in listed.json["templates"]}
    assert by_key[KEY]["users"] == 3 and by_key[KEY]["files"] is True
    assert listed.json["pool"]["profiles"][0]["waiting"] == 2

    alice = api_caller(app, User.get(User.username == "alice"))
    anonymous = api_caller(app)
    for call, status in ((anonymous, 401), (alice, 403)):
        assert call("get", "/admin/templates").status_code == status
        assert call("post", f"/admin/templates/{KEY}/drop").status_code == status
    assert GuestTemplate.get(GuestTemplate.key == KEY).state == "ready" and ram.exists()

    dropped = admin("post", f"/admin/templates/{KEY}/drop")
    assert dropped.status_code == 200 and dropped.json["template"]["state"] == "dropped" and not ram.exists()
    missing = admin("post", "/admin/templates/nope/drop")
    assert missing.status_code == 404 and "template list" in missing.json["hint"]


def test_metrics_count_pool_slots_per_profile(app, ram):
    text = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True)
    assert 'appliance_pool_slots{profile="minimal",state="waiting"} 2' in text
    assert 'appliance_pool_slots{profile="minimal",state="starting"} 0' in text
    assert 'appliance_pool_target{profile="minimal"} 2' in text


@pytest.fixture
def cache(db):
    from appliance.environments.models import Environment, EnvironmentCache

    alice = User.get(User.username == "alice")
    env = Environment.create(owner=alice, name="deps", setup_script="make deps")
    return EnvironmentCache.create(key="k" * 64, environment=env, repository="acme/app", image_dir="/x",
                                   state="ready", size_bytes=300 * 1024 * 1024, uses=4, source_session="ses-1")


def test_admins_see_and_drop_environment_caches_on_the_console(app, cache):
    from appliance.environments.models import EnvironmentCache

    alice, alice_csrf = console_login(app, "alice")
    assert alice.post(f"/admin/envcaches/{cache.id}/drop", data={"csrf_token": alice_csrf}).status_code == 404
    admin, csrf = console_login(app, "admin")
    assert admin.post(f"/admin/envcaches/{cache.id}/drop").status_code == 400, "without the form's token"
    page = admin.get("/admin/templates").get_data(as_text=True)
    row = page.split(f'data-cache="{cache.id}"')[1].split("</tr>")[0]
    assert "alice/deps" in row and "acme/app" in row and "300 MiB" in row and '<td class="uses">4</td>' in row
    assert EnvironmentCache.get_by_id(cache.id).state == "ready"
    assert admin.post(f"/admin/envcaches/{cache.id}/drop", data={"csrf_token": csrf}).status_code == 302
    assert EnvironmentCache.get_by_id(cache.id).state == "dropped"


def test_the_api_lists_and_drops_environment_caches_for_admins_only(app, cache):
    from appliance.environments.models import EnvironmentCache

    alice = api_caller(app, User.get(User.username == "alice"))
    anonymous = api_caller(app)
    for call, status in ((anonymous, 401), (alice, 403)):
        assert call("get", "/admin/envcaches").status_code == status
        assert call("post", f"/admin/envcaches/{cache.id}/drop").status_code == status
    assert EnvironmentCache.get_by_id(cache.id).state == "ready"
    admin = api_caller(app, User.get(User.username == "admin"))
    [listed] = admin("get", "/admin/envcaches").json["caches"]
    assert (listed["id"], listed["environment"], listed["owner"], listed["uses"]) == (cache.id, "deps", "alice", 4)
    dropped = admin("post", f"/admin/envcaches/{cache.id}/drop")
    assert dropped.status_code == 200 and dropped.json["cache"]["state"] == "dropped"
    missing = admin("post", "/admin/envcaches/999/drop")
    assert missing.status_code == 404 and "envcache list" in missing.json["hint"]
    assert admin("get", "/admin/envcaches").json["caches"] == [], "a dropped cache is no longer listed"
