"""Admins see the guest templates (rows, files, bytes, users) and the warm pool, and drop a template:
the row becomes dropped and its RAM directory goes at once; its disk stays for the clones."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

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


def files(conf, key=KEY, ram_bytes=8192, generation="a1b2c3"):
    """One complete generation of `key`, laid out as appliance/sandbox/templates.py makes it."""
    name = f"{key}-{generation}"
    ram = Path(conf.template_dir) / name
    ram.mkdir(parents=True)
    (ram / "ram").write_bytes(b"\1" * ram_bytes)
    (ram / "state").write_bytes(b"\2" * 100)
    disk = conf.state_dir / "templates" / name
    disk.mkdir(parents=True)
    (disk / "disk.qcow2").write_bytes(b"\3" * 4096)
    (disk / "template.json").write_text("{}\n")
    return ram, disk


def sandbox(state="running", **kw) -> Sandbox:
    return Sandbox.create(profile=kw.pop("profile", "minimal"), image_dir="/x", vcpus=1, memory_mb=512, disk_gb=4,
                          state=state, **kw)


def test_the_list_says_state_files_size_and_users(db, conf):
    files(conf)
    template(error=None)
    template(key="fedcba9876543210", state="failed", minutes_ago=5, made_at=None, build_seconds=None,
             error="the template guest did not come up")
    files(conf, generation="d4e5f6", ram_bytes=4096)  # an older generation its clones still use
    sandbox(template_key=f"{KEY}-a1b2c3", purpose="session", session_id="s1")
    sandbox(template_key=f"{KEY}-d4e5f6", purpose="pool")
    sandbox(template_key=f"{KEY}-a1b2c3", state="destroyed")  # ended: no longer a user
    sandbox(template_key="fedcba9876543210-a1b2c3")  # another key's

    ready, failed = template_admin.list_templates(conf)
    assert (ready.key, ready.state, ready.files, ready.users) == (KEY, "ready", True, 2)
    assert ready.bytes_on_disk >= 8192 + 4096 + 2 * (100 + 4096)
    assert (failed.state, failed.files, failed.users, failed.bytes_on_disk) == ("failed", False, 1, 0)
    assert failed.error == "the template guest did not come up"
    shown = ready.to_dict()
    assert shown["made_at"].endswith("Z") and shown["build_seconds"] == 31.5
    json.dumps(shown)  # what the API and `--json` print


def test_a_template_without_its_ram_cannot_be_cloned_from(db, conf):
    ram, _ = files(conf)
    template()
    shutil.rmtree(ram)
    (view,) = template_admin.list_templates(conf)
    assert view.files is False and view.bytes_on_disk > 0, "its disk is still there"


def test_a_template_of_another_host_is_not_looked_for_here(db, conf):
    files(conf)
    template(host="worker-b")
    sandbox(template_key=f"{KEY}-a1b2c3", host="worker-b")
    sandbox(template_key=f"{KEY}-a1b2c3")  # this server's sandbox: not a user of worker-b's copy
    (view,) = template_admin.list_templates(conf)
    assert (view.files, view.bytes_on_disk, view.users) == (None, 0, 1)


def test_dropping_removes_the_ram_now_and_keeps_the_disk_for_its_clones(db, conf):
    ram, disk = files(conf)
    old_ram, _ = files(conf, generation="d4e5f6")
    other_ram, _ = files(conf, key="fedcba9876543210")
    template()
    sandbox(template_key=f"{KEY}-a1b2c3", purpose="session", session_id="s1")

    view = template_admin.drop_template(conf, KEY)
    assert view.state == "dropped" and GuestTemplate.get(GuestTemplate.key == KEY).state == "dropped"
    assert not ram.exists() and not old_ram.exists(), "no new clone can start from any generation"
    assert (disk / "disk.qcow2").exists(), "the live clone's overlay is backed by it"
    assert other_ram.exists(), "another template's RAM stays"
    assert view.users == 1 and view.files is False
    assert template_admin.drop_template(conf, KEY).state == "dropped"  # again: nothing left to do, no error


def test_an_unknown_key_is_not_found_with_a_hint(db, conf):
    files(conf)
    template()
    with pytest.raises(NotFound) as e:
        template_admin.drop_template(conf, "nope")
    assert "template list" in e.value.hint
    assert GuestTemplate.get(GuestTemplate.key == KEY).state == "ready"


@pytest.mark.parametrize("key", ["..", "../tpl", "", "a/b", "/etc", "*", "0123"])
def test_a_key_that_is_a_path_or_a_pattern_removes_nothing(db, conf, key, tmp_path):
    """Even with a row of that name (the key becomes part of a path under template_dir)."""
    ram, disk = files(conf)
    victim = tmp_path / "shm" / "victim-x"
    victim.mkdir()
    template(key=key)
    if key == "0123":  # a well-formed key that is another key's prefix: its row goes, nothing else
        assert template_admin.drop_template(conf, key).state == "dropped"
    else:
        with pytest.raises(NotFound):
            template_admin.drop_template(conf, key)
    assert ram.exists() and disk.exists() and victim.exists()


def test_the_pool_counts_waiting_starting_and_retiring_slots_per_profile(db, tmp_path, cfg):
    on = make_config(cfg.state_dir, database_url=cfg.database_url, guest_templates="on", warm_pool="3")
    sandbox(purpose="pool")
    sandbox(purpose="pool")
    sandbox(purpose="pool-fill", state="creating")
    sandbox(purpose="pool-retire", state="destroying")
    sandbox(purpose="pool", state="destroyed")
    sandbox(purpose="pool", profile="general")
    sandbox(purpose="session", session_id="s2")  # a claimed slot is its session's guest: not a slot

    status = template_admin.pool_status(on, available_mb=100_000)
    assert status.enabled and status.target == 3
    by = {p.profile: p for p in status.profiles}
    assert (by["minimal"].waiting, by["minimal"].starting, by["minimal"].retiring, by["minimal"].slots) == (2, 1, 1, 4)
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
