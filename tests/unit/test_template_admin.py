"""Admins see the guest templates (rows, files, bytes, users) and the warm pool, and drop a template:
the row becomes dropped and its RAM directory goes at once; its disk stays for the clones."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from appliance import template_admin
from appliance.cli.main import main as cli
from appliance.db import utcnow
from appliance.errors import NotFound
from appliance.models import GuestTemplate, Sandbox

from helpers import make_config

KEY = "0123456789abcdef"


@pytest.fixture
def conf(cfg, tmp_path):
    """The test's config with template_dir in its own tmp dir."""
    return make_config(cfg.state_dir, database_url=cfg.database_url, template_dir=str(tmp_path / "shm" / "tpl"))


def template(key=KEY, state="ready", minutes_ago=0, **kw) -> GuestTemplate:
    at = utcnow() - dt.timedelta(minutes=minutes_ago)
    fields = dict(key=key, profile="minimal", image_hash="abc123", domain_type="qemu", vcpus=1, memory_mb=512,
                  disk_gb=4, qemu_version="7.2.0", state=state, created_at=at, made_at=at, build_seconds=31.5)
    return GuestTemplate.create(**{**fields, **kw})


def files(conf, key=KEY, ram_bytes=8192):
    ram = template_admin.ram_dir(conf, key)
    ram.mkdir(parents=True)
    (ram / "ram").write_bytes(b"\1" * ram_bytes)
    (ram / "state").write_bytes(b"\2" * 100)
    disk = template_admin.disk_dir(conf, key)
    disk.mkdir(parents=True)
    (disk / "disk.qcow2").write_bytes(b"\3" * 4096)
    return ram, disk


def sandbox(state="running", **kw) -> Sandbox:
    return Sandbox.create(profile=kw.pop("profile", "minimal"), image_dir="/x", vcpus=1, memory_mb=512, disk_gb=4,
                          state=state, **kw)


def test_the_list_says_state_files_size_and_users(db, conf):
    files(conf)
    template(error=None)
    template(key="fedcba9876543210", state="failed", minutes_ago=5, made_at=None, build_seconds=None,
             error="the template guest did not come up")
    sandbox(template_key=KEY, purpose="session", session_id="s1")
    sandbox(template_key=KEY, purpose="pool")
    sandbox(template_key=KEY, state="destroyed")  # ended: no longer a user

    ready, failed = template_admin.list_templates(conf)
    assert (ready.key, ready.state, ready.files, ready.users) == (KEY, "ready", True, 2)
    assert ready.bytes_on_disk >= 8192 + 100 + 4096
    assert (failed.state, failed.files, failed.users, failed.bytes_on_disk) == ("failed", False, 0, 0)
    assert failed.error == "the template guest did not come up"
    shown = ready.to_dict()
    assert shown["made_at"].endswith("Z") and shown["build_seconds"] == 31.5
    json.dumps(shown)  # what the API and `--json` print


def test_a_template_of_another_host_is_not_looked_for_here(db, conf):
    files(conf)
    template(host="worker-b")
    sandbox(template_key=KEY, host="worker-b")
    sandbox(template_key=KEY)  # this server's sandbox: not a user of worker-b's copy
    (view,) = template_admin.list_templates(conf)
    assert (view.files, view.bytes_on_disk, view.users) == (None, 0, 1)


def test_dropping_removes_the_ram_now_and_keeps_the_disk_for_its_clones(db, conf):
    ram, disk = files(conf)
    template()
    sandbox(template_key=KEY, purpose="session", session_id="s1")

    view = template_admin.drop_template(conf, KEY)
    assert view.state == "dropped" and GuestTemplate.get(GuestTemplate.key == KEY).state == "dropped"
    assert not ram.exists(), "no new clone can start from it"
    assert (disk / "disk.qcow2").exists(), "the live clone's overlay is backed by it"
    assert view.users == 1 and view.files is False
    assert template_admin.drop_template(conf, KEY).state == "dropped"  # again: nothing left to do, no error


def test_an_unknown_key_is_not_found_with_a_hint(db, conf):
    files(conf)
    template()
    with pytest.raises(NotFound) as e:
        template_admin.drop_template(conf, "nope")
    assert "template list" in e.value.hint
    assert GuestTemplate.get(GuestTemplate.key == KEY).state == "ready"


@pytest.mark.parametrize("key", ["..", "../tpl", "", "a/b", "/etc"])
def test_a_key_that_is_a_path_removes_nothing(db, conf, key, tmp_path):
    """Even with a row of that name (the key becomes a path under template_dir)."""
    ram, disk = files(conf)
    victim = tmp_path / "shm" / "victim"
    victim.mkdir()
    template(key=key)
    with pytest.raises(NotFound):
        template_admin.drop_template(conf, key)
    assert ram.exists() and disk.exists() and victim.exists()


def test_the_pool_counts_waiting_claimed_and_starting_slots_per_profile(db, tmp_path, cfg):
    on = make_config(cfg.state_dir, database_url=cfg.database_url, guest_templates="on", warm_pool="3")
    sandbox(purpose="pool")
    sandbox(purpose="pool")
    sandbox(purpose="pool", session_id="s1")
    sandbox(purpose="pool", state="creating")
    sandbox(purpose="pool", state="destroyed")
    sandbox(purpose="pool", profile="general")
    sandbox(purpose="session", session_id="s2")  # not a slot

    status = template_admin.pool_status(on, available_mb=100_000)
    assert status.enabled and status.target == 3
    by = {p.profile: p for p in status.profiles}
    assert (by["minimal"].waiting, by["minimal"].claimed, by["minimal"].starting, by["minimal"].slots) == (2, 1, 1, 4)
    assert by["minimal"].target == 3, "the pool is kept for the default profile"
    assert (by["general"].waiting, by["general"].target) == (1, 0)
    assert status.to_dict()["profiles"][1]["slots"] == 4

    off = template_admin.pool_status(make_config(cfg.state_dir, database_url=cfg.database_url), available_mb=100_000)
    assert not off.enabled and off.target == 0


def test_newest_failure_is_the_reason_templates_do_not_work_now(db):
    assert template_admin.newest_failure() is None
    template(key="a1", state="ready", minutes_ago=10)
    template(key="b2", state="failed", minutes_ago=5, error="boom")
    assert template_admin.newest_failure().error == "boom"
    template(key="c3", state="building", minutes_ago=1)
    assert template_admin.newest_failure().key == "b2", "a build still running changes nothing yet"
    template(key="d4", state="ready")
    assert template_admin.newest_failure() is None, "one was made since"


def test_the_cli_lists_and_drops(db, conf, monkeypatch, capsys):
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(conf.state_dir))
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", conf.database_url)
    monkeypatch.setenv("APPLIANCE_TEMPLATE_DIR", conf.template_dir)
    monkeypatch.setenv("APPLIANCE_CONFIG", str(conf.state_dir / "none.toml"))
    ram, _ = files(conf)
    template()
    assert cli(["template", "list"]) == 0
    out = capsys.readouterr().out
    assert KEY in out and "ready" in out and "minimal" in out
    assert cli(["template", "list", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["templates"][0]["key"] == KEY and "pool" in shown
    assert cli(["template", "drop", KEY]) == 0
    assert "dropped" in capsys.readouterr().out and not ram.exists()
    assert cli(["template", "drop", "nope"]) == 2
    assert "hint:" in capsys.readouterr().err
