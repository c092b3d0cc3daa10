"""The warm pool with real guests: slots cloned from a template wait paused; a session claims one
with its own egress policy and gets a running guest at once; the pool refills; and the faults —
a process dying mid-claim or mid-refill, libvirtd restarted, the template's files gone — leave
sessions starting and nothing leaked."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.accounts.models import User
from appliance.environments.models import Environment
from appliance.models import Sandbox, SandboxState
from appliance.repos.models import Repository
from appliance.sandbox.manager import SandboxRequest
from appliance.sandbox.pool import FILLING, SLOT, take_slot
from appliance.sessions.models import Event
from appliance.sessions.service import NewSession
from netpolicy.allowlist import Policy

from appliance_world import appliance_world, remove, state_dir, wait_idle
from daemon_process import restart_libvirtd
from gitserver import GitServer

pytestmark = [pytest.mark.vm, pytest.mark.root]

RESTART_LIBVIRTD = os.environ.get("APPLIANCE_TEST_SKIP_LIBVIRTD_RESTART") != "1"
NET = dict(bridge="apltestp", subnet="10.232.0.0/24", tap_prefix="aplq", egress_table="applpool")


def slots() -> list[Sandbox]:
    return list(Sandbox.select().where((Sandbox.purpose == SLOT) & Sandbox.state.in_(SandboxState.LIVE)))


def taps() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if f": {NET['tap_prefix']}" in line}


def test_sessions_claim_warm_slots_and_faults_leave_nothing(hv):
    state = state_dir("pool")
    ram_dir = Path(f"/dev/shm/appliance-test-pool-{os.getpid()}")
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/app", {"README.md": "hello\n"})
    try:
        with appliance_world(hv, state, guest_templates="on", template_dir=str(ram_dir), warm_pool="2",
                             memory_mb=768, idle_guest_timeout=3600.0, max_running_sessions=3, **NET) as w:
            mgr, pool = w.sandboxes, w.sandboxes.pool
            started = time.monotonic()
            made = pool.refill()  # makes the template, then two clones, each paused
            print(f"\ntemplate + 2 slots: {time.monotonic() - started:.1f} s")
            assert len(made) == 2 and {s.id for s in slots()} == set(made)
            for slot in slots():
                assert hv.is_paused(slot.domain_name), "a waiting slot uses no CPU"
                assert slot.template_key and slot.session_id is None
                assert w.egress.table.get(slot.id).policy.level == "none"

            w.engine.start()
            user = User.create(username="alice")
            Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                              credential_secret=upstream.token, credential_username="x-access-token")
            Environment.create(owner=user, name="dev", is_default=True)

            def start(prompt: str, command: str) -> str:
                return w.engine.service.create(user, NewSession("acme/app", prompt, agent="command",
                                                                command=command)).id

            # -- a session claims a slot: running at once, with the session's policy -------------------
            sid = start("warm", "date +%s > warm.txt; hostname >> warm.txt")
            s = wait_idle(w.engine, sid)
            assert s.status == "idle", s.status_detail
            sandbox = Sandbox.get_by_id(s.sandbox_id)
            assert sandbox.id in made, "the session's guest is a pool slot"
            assert (sandbox.purpose, sandbox.session_id) == ("session", sid)
            assert not hv.is_paused(sandbox.domain_name)
            entry = w.egress.table.get(sandbox.id)
            assert entry.policy.level == "limited" and entry.session_id == sid, "the slot took the session's policy"
            texts = [e.data.get("text", "") for e in Event.select().where((Event.session == sid) & (Event.kind == "log"))]
            assert f"guest {sandbox.id} from the warm pool" in texts
            stamp, hostname = upstream.read_file("acme/app", s.work_branch, "warm.txt").split()
            assert abs(int(stamp) - time.time()) < 120, "the clock was set at the claim"
            assert hostname == sandbox.id

            assert len(pool.refill()) == 1 and len(slots()) == 2, "the pool refilled"

            # -- three claims at once, two slots: each served, none shares a guest -----------------------
            shape = pool.default_shape()
            got: dict[int, Sandbox] = {}

            def claim(i: int) -> None:
                from appliance.db import database

                with database.connection_context():
                    got[i] = mgr.create(SandboxRequest(purpose="session", session_id=f"x-{i}",
                                                       network=Policy.make("none")))

            threads = [threading.Thread(target=claim, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len({sb.id for sb in got.values()}) == 3, "three guests for three claims"
            assert sum(sb.template_key is not None for sb in got.values()) == 3
            for i, sb in got.items():
                assert Sandbox.get_by_id(sb.id).session_id == f"x-{i}"
                with mgr.ssh(sb) as guest:
                    assert guest.exec("hostname").text.strip() == sb.id
                mgr.destroy(sb.id)
            assert slots() == []
            pool.refill()

            # -- a process died mid-claim (row taken, guest still paused): reconcile resumes it ----------
            victim = take_slot(shape, "s-crashed", Policy.make("none"))
            assert hv.is_paused(victim.domain_name)
            report = mgr.reconcile()
            assert victim.id in report["resumed"] and not hv.is_paused(victim.domain_name)
            mgr.destroy(victim.id)

            # -- a process died mid-refill: its half-made slot is destroyed when the pool starts -------
            half = mgr.create(SandboxRequest(purpose=FILLING, network=Policy.make("none")))
            assert pool.discard_unfinished() == [half.id]
            assert not hv.exists(half.domain_name) and half.tap not in taps()
            assert w.egress.table.get(half.id) is None

            # -- libvirtd restarted: waiting slots survive, paused, and serve the next session -------------
            pool.refill()
            if RESTART_LIBVIRTD:
                restart_libvirtd()
            assert all(hv.is_paused(slot.domain_name) for slot in slots())
            report = mgr.reconcile()
            assert not report["lost"] and not report["destroyed_domains"]

            # -- the template's files gone: slots still serve (they own their memory); a rebuild follows ---
            shutil.rmtree(ram_dir)
            ram_dir.mkdir()
            shutil.chown(ram_dir, user="libvirt-qemu")
            sid2 = start("after the template went", "echo two > two.txt")
            s2 = wait_idle(w.engine, sid2)
            assert s2.status == "idle", s2.status_detail
            assert Sandbox.get_by_id(s2.sandbox_id).purpose == "session"
            pool.refill()
            assert len(slots()) == 2 and all(hv.is_paused(slot.domain_name) for slot in slots())
            assert len(list(ram_dir.iterdir())) == 1, "a new template generation"

            # -- the pool made smaller: waiting slots go, claimed guests stay ----------------------------
            w.sandboxes.config = replace(w.cfg, warm_pool="0")
            pool.refill()
            assert slots() == []
            assert Sandbox.get_by_id(s2.sandbox_id).state == SandboxState.RUNNING
        assert taps() == set(), "nothing left on the host"
    finally:
        upstream.close()
        shutil.rmtree(ram_dir, ignore_errors=True)
        remove(state)
