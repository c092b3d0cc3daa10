"""Guests from a template: a booted guest saved once, new sandboxes started from its state with an
identity of their own — and a template that cannot be used falls back to a cold boot."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from appliance.models import Sandbox
from appliance.sandbox.manager import SandboxRequest
from netpolicy.allowlist import Policy

from appliance_world import appliance_world, remove, state_dir

pytestmark = [pytest.mark.vm, pytest.mark.root]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cloned(hv, sandbox: Sandbox) -> bool:
    return "-incoming" in hv.conn.lookupByName(sandbox.domain_name).XMLDesc(0)


def test_sandboxes_start_from_a_template_each_with_its_own_identity(hv):
    state = state_dir("templates")
    ram_dir = Path(f"/dev/shm/appliance-test-templates-{os.getpid()}")
    try:
        with appliance_world(hv, state, bridge="apltestt", subnet="10.231.0.0/24", tap_prefix="aplm",
                             egress_table="appltmpl", guest_templates="on", template_dir=str(ram_dir),
                             memory_mb=768) as w:
            mgr = w.sandboxes
            request = SandboxRequest(memory_mb=768, network=Policy.make("none"))
            started = time.monotonic()
            a = mgr.create(request)  # makes the template, then starts from it
            first = time.monotonic() - started
            started = time.monotonic()
            b = mgr.create(request)
            second = time.monotonic() - started
            print(f"\nfirst sandbox (template made): {first:.1f} s; second (clone): {second:.1f} s")
            assert cloned(hv, a) and cloned(hv, b)
            [template_dir] = list(ram_dir.iterdir())
            ram_hash = sha256(template_dir / "ram")

            seen = {}
            for sb in (a, b):
                with mgr.ssh(sb) as guest:  # its own host key (pinned) and client key
                    out = guest.exec("hostname; cat /proc/sys/kernel/random/boot_id /etc/machine-id;"
                                     " cat /sys/class/net/eth0/address; ip -4 -o addr show eth0;"
                                     " date +%s").text.split("\n")
                seen[sb.id] = out
                assert out[0] == sb.id, out
                assert out[3] == sb.mac, "the NIC took the sandbox's MAC"
                assert f"{sb.address}/" in out[4]
                assert abs(int(out[5]) - time.time()) < 30, "the clock was set"
            (ha, hb) = seen[a.id], seen[b.id]
            assert ha[1] == hb[1], "the same boot: both are clones of one guest"
            assert ha[2] != hb[2], "each has a machine-id of its own"
            mgr.destroy(a.id)
            mgr.destroy(b.id)
            assert sha256(template_dir / "ram") == ram_hash, "clones never write the template's RAM"

            # a broken template: the next guest cold-boots, and the template is made again after that
            (template_dir / "state").write_bytes(b"\0" * 200)
            c = mgr.create(request)
            assert not cloned(hv, c), "a template that does not load means a cold boot"
            with mgr.ssh(c) as guest:
                assert guest.exec("hostname").text.strip() == c.id
            mgr.destroy(c.id)
            assert not (template_dir / "state").exists(), "the broken template is gone"
            d = mgr.create(request)
            assert cloned(hv, d), "the template was made again"
            mgr.destroy(d.id)
    finally:
        shutil.rmtree(ram_dir, ignore_errors=True)
        remove(state)
