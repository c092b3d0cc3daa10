"""Bad input and faults during sandbox creation: a clear error naming the fix, nothing leaked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from appliance.db import open_database
from appliance.errors import ApplianceError, HypervisorUnavailable, ImageMissing, NotFound, NotReady, ResourceExhausted
from appliance.models import Sandbox, SandboxState
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sandbox.manager import SandboxManager, SandboxRequest
from netpolicy import bridge

from helpers import make_config, need_root

NET = dict(bridge="apltest1", subnet="10.215.0.0/24", tap_prefix="aplf", egress_table="applfault")


@pytest.fixture
def state():
    # world-traversable, unlike pytest's tmp dirs: qemu (libvirt-qemu) reads the overlays
    path = Path(tempfile.mkdtemp(prefix="appliance-faults-", dir="/var/tmp"))
    path.chmod(0o711)
    yield path
    if os.path.ismount(path / "sandboxes"):
        subprocess.run(["umount", str(path / "sandboxes")], check=False)
    shutil.rmtree(path, ignore_errors=True)


def manager_for(state: Path, **overrides) -> SandboxManager:
    cfg = make_config(state, **{**NET, **overrides})
    open_database(cfg.database_url)
    return SandboxManager(cfg, Hypervisor(cfg.libvirt_uri))


def assert_nothing_left(mgr: SandboxManager):
    assert bridge.links_with_prefix(mgr.config.tap_prefix) == []
    assert [t for t in mgr.hv.tagged_domains() if t.instance == mgr.instance] == []
    sandboxes = mgr.config.sandbox_dir
    assert not sandboxes.exists() or [p for p in sandboxes.iterdir() if p.name.startswith("sb-")] == []
    assert Sandbox.select().where(Sandbox.state.in_(SandboxState.LIVE)).count() == 0


@pytest.fixture(autouse=True)
def _cleanup_network():
    yield
    bridge.delete_link(NET["bridge"])
    if os.geteuid() == 0:
        from netpolicy.nft import Nft

        for family in ("inet", "bridge"):
            if Nft().table_exists(family, NET["egress_table"]):
                Nft().apply(f"delete table {family} {NET['egress_table']}\n")


def test_unknown_profile_lists_the_known_ones(state):
    mgr = manager_for(state)
    with pytest.raises(ApplianceError) as e:
        mgr.create(SandboxRequest(profile="enormous"))
    assert "minimal" in str(e.value)
    assert Sandbox.select().count() == 0


def test_missing_image_says_how_to_build_it(state):
    mgr = manager_for(state, image_dir=state / "no-images")
    with pytest.raises(ImageMissing) as e:
        mgr.create()
    assert "appliance image build minimal" in e.value.hint
    assert Sandbox.select().count() == 0


def test_libvirtd_down_is_reported_before_anything_is_made(state):
    need_root()
    mgr = manager_for(state, libvirt_uri=f"qemu+unix:///system?socket={state}/no-libvirtd.sock")
    with pytest.raises(HypervisorUnavailable) as e:
        mgr.create()
    assert "libvirtd" in e.value.hint
    assert Sandbox.select().count() == 0


def test_unknown_sandbox_and_second_destroy(state):
    mgr = manager_for(state)
    with pytest.raises(NotFound):
        mgr.destroy("sb-doesnotexist")


def test_addresses_run_out_cleanly(state):
    mgr = manager_for(state, subnet="10.215.0.0/29")  # 6 hosts: the bridge and 5 sandboxes
    for _ in range(5):
        mgr._insert_row(SandboxRequest(), "minimal", "/img", "tcg")
    with pytest.raises(ResourceExhausted, match="no free address"):
        mgr._insert_row(SandboxRequest(), "minimal", "/img", "tcg")
    addresses = sorted(s.address for s in Sandbox.select())
    assert addresses == [f"10.215.0.{i}" for i in range(2, 7)]


@pytest.mark.root
def test_disk_full_while_creating_the_overlay(state):
    need_root()
    sandboxes = state / "sandboxes"
    sandboxes.mkdir()
    # 64 KiB: room for keys and the identity blob, not for a qcow2 overlay's tables
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0711", "tmpfs", str(sandboxes)], check=True)
    mgr = manager_for(state, min_free_disk_mb=0)
    with pytest.raises(ResourceExhausted) as e:
        mgr.create()
    assert "disk full" in e.value.message and "free disk space" in e.value.hint
    failed = Sandbox.get()
    assert failed.state == SandboxState.FAILED and "disk full" in failed.error
    assert_nothing_left(mgr)


@pytest.mark.root
def test_too_little_free_space_is_refused_up_front(state):
    need_root()
    mgr = manager_for(state, min_free_disk_mb=10**9)
    with pytest.raises(ResourceExhausted, match="MiB free"):
        mgr.create()
    assert Sandbox.select().count() == 0


@pytest.mark.root
@pytest.mark.vm
def test_a_guest_that_never_becomes_ready(state):
    need_root()
    mgr = manager_for(state, ready_timeout=8)
    with pytest.raises(NotReady) as e:
        mgr.create()
    assert "did not answer SSH within 8 s" in e.value.message
    console = e.value.message.split("console:\n", 1)[1]
    assert re.search(r"^\[\s*\d+\.\d+\] ", console, re.M), "the guest's console tail is in the error"
    assert Sandbox.get().state == SandboxState.FAILED
    assert_nothing_left(mgr)


def test_cli_errors_are_one_line_plus_a_hint(state):
    env = {**os.environ, "APPLIANCE_CONFIG": str(state / "none.toml"), "APPLIANCE_STATE_DIR": str(state)}
    out = subprocess.run([sys.executable, "-m", "appliance.cli.main", "sandbox", "exec", "sb-nope", "--", "true"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["error: no sandbox sb-nope", "hint: see 'appliance sandbox list'"]
    out = subprocess.run([sys.executable, "-m", "appliance.cli.main", "sandbox", "create"],
                         capture_output=True, text=True, env={**env, "APPLIANCE_ACCEL": "warp"})
    assert out.returncode == 1 and "accel must be one of" in out.stderr
