#!/usr/bin/env python3
"""`scripts/bench pool`: the warm pool, as JSON lines (needs root: real guests), in one run:

* submit → agent running of a `command` session, warm (a claimed pool slot) vs the cold-boot path
  (guest_templates off) on the same repository: p50 of each, the ratio, and the warm split
  (queue, fetch, boot = claim, clone, setup);
* pool claim → first command in the guest, p50, vs a template clone → SSH ready without a pool;
* host memory of an idle (paused) slot's qemu (RSS and Pss) vs an idle cold-booted guest's;
* 8 concurrent claims against 8 slots on this host's cores: all served, none shares a slot;
* an environment with a setup script (`--setup-seconds` of work): submit → agent running from its
  environment cache vs the same session setting up on a cold-booted guest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_templates import memory_mib  # noqa: E402

from appliance.accounts.models import User  # noqa: E402
from appliance.db import database  # noqa: E402
from appliance.environments.models import Environment  # noqa: E402
from appliance.models import Sandbox, SandboxState  # noqa: E402
from appliance.repos.models import Repository  # noqa: E402
from appliance.sandbox.hypervisor import Hypervisor  # noqa: E402
from appliance.sandbox.manager import SandboxRequest  # noqa: E402
from appliance.sandbox.pool import SLOT  # noqa: E402
from appliance.sessions.models import Session, Status, Turn  # noqa: E402
from appliance.sessions.service import NewSession  # noqa: E402
from netpolicy.allowlist import Policy  # noqa: E402

from appliance_world import appliance_world, remove, state_dir  # noqa: E402
from gitserver import GitServer  # noqa: E402

TO_AGENT = ("queue", "fetch", "boot", "clone", "setup")


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def session_to_agent(w, user, environment: str | None = None) -> dict:
    s = w.engine.service.create(user, NewSession("acme/app", "bench", agent="command", command="true",
                                                 environment=environment))
    while Session.get_by_id(s.id).status not in (Status.IDLE, Status.FAILED) or s.id in w.engine.running_sessions():
        time.sleep(0.2)
    row = Session.get_by_id(s.id)
    if row.status != Status.IDLE:
        raise SystemExit(f"bench session {s.id} failed: {row.status_detail}")
    timings = Turn.get(Turn.session == s.id).timings
    guest = Sandbox.get_or_none(Sandbox.id == row.sandbox_id)
    if guest is not None and guest.state in SandboxState.LIVE:
        w.sandboxes.destroy(guest.id)
    return {k: timings.get(k, 0.0) for k in TO_AGENT}


def waiting_slots() -> list[Sandbox]:
    return list(Sandbox.select().where((Sandbox.purpose == SLOT) & (Sandbox.state == SandboxState.RUNNING)))


def main() -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--setup-seconds", type=int, default=20)
    args = parser.parse_args()
    state = state_dir("bench-pool")
    ram_dir = Path(f"/dev/shm/appliance-bench-pool-{os.getpid()}")
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/app", {"README.md": "hello\n", "app.py": "print('hi')\n"})
    hv = Hypervisor("qemu:///system")
    try:
        with appliance_world(hv, state, bridge="aplbenchp", subnet="10.233.0.0/24", tap_prefix="aplbp",
                             egress_table="applbenchp", guest_templates="on", template_dir=str(ram_dir),
                             warm_pool=str(args.runs), memory_mb=768, max_running_sessions=1) as w:
            run(w, hv, args, upstream)
    finally:
        upstream.close()
        shutil.rmtree(ram_dir, ignore_errors=True)
        remove(state)
    return 0


def run(w, hv, args, upstream) -> None:
    mgr, pool = w.sandboxes, w.sandboxes.pool
    w.engine.start()
    user = User.create(username="bench")
    Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                      credential_secret=upstream.token)
    mode = mgr.accel().mode
    templated = w.cfg
    cold_cfg = replace(templated, guest_templates="off")

    # the cold path: templates (and so the pool) off
    mgr.config = cold_cfg
    cold = [session_to_agent(w, user) for _ in range(max(1, args.runs // 2))]
    mgr.config = templated

    # the warm path: every session claims a slot the pool made beforehand
    pool.refill()
    clone_ready = []
    for _ in range(args.runs):  # template clone → SSH ready without a pool, for the comparison below
        started = time.monotonic()
        sb = mgr.create(SandboxRequest(memory_mb=768, network=Policy.make("none")))
        clone_ready.append(time.monotonic() - started)
        mgr.destroy(sb.id)
    warm = []
    for _ in range(args.runs):
        if not waiting_slots():
            pool.refill()
        warm.append(session_to_agent(w, user))
    cold_total = [sum(t.values()) for t in cold]
    warm_total = [sum(t.values()) for t in warm]
    emit(bench="submit_to_agent_running_warm", accel=mode, runs=len(warm), seconds_p50=p50(warm_total),
         split_p50={k: p50([t[k] for t in warm]) for k in TO_AGENT},
         baseline="the cold-boot path (templates off), same repository", baseline_runs=len(cold),
         baseline_p50=p50(cold_total), baseline_split_p50={k: p50([t[k] for t in cold]) for k in TO_AGENT},
         speedup=round(p50(cold_total) / p50(warm_total), 1))

    # pool claim → first command
    pool.refill()
    claims = []
    for i in range(args.runs):
        if not waiting_slots():
            pool.refill()
        started = time.monotonic()
        sb = mgr.create(SandboxRequest(memory_mb=768, purpose="session", session_id=f"bench-{i}",
                                       network=Policy.make("none")))
        with mgr.ssh(sb) as guest:
            guest.exec("true")
        claims.append(time.monotonic() - started)
        mgr.destroy(sb.id)
    emit(bench="pool_claim_to_first_command", accel=mode, runs=len(claims), seconds_p50=p50(claims),
         baseline="template clone → SSH ready, no pool", baseline_p50=p50(clone_ready),
         ratio=round(p50(clone_ready) / p50(claims), 1))

    # memory of an idle slot vs an idle cold-booted guest
    pool.refill()
    slot = waiting_slots()[0]
    slot_rss, slot_pss = memory_mib(hv.qemu_pid(slot.domain_name))
    mgr.config = cold_cfg
    cold_sb = mgr.create(SandboxRequest(memory_mb=768, network=Policy.make("none")))
    time.sleep(20)  # let its boot settle
    cold_rss, cold_pss = memory_mib(hv.qemu_pid(cold_sb.domain_name))
    mgr.destroy(cold_sb.id)
    mgr.config = templated
    emit(bench="idle_pool_slot_memory", accel=mode, rss_mib=round(slot_rss), pss_mib=round(slot_pss),
         baseline="idle cold-booted guest", baseline_rss_mib=round(cold_rss), baseline_pss_mib=round(cold_pss),
         ratio_rss=round(slot_rss / cold_rss, 2))

    # n concurrent claims against n slots
    mgr.config = replace(templated, warm_pool=str(args.concurrent))
    pool.refill()
    waiting = {sb.id for sb in waiting_slots()}
    got: dict[int, str] = {}
    took: dict[int, float] = {}

    def claim(i: int) -> None:
        with database.connection_context():
            started = time.monotonic()
            sb = mgr.create(SandboxRequest(memory_mb=768, purpose="session", session_id=f"conc-{i}",
                                           network=Policy.make("none")))
            with mgr.ssh(sb) as guest:
                guest.exec("true")
            took[i] = time.monotonic() - started
            got[i] = sb.id

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(args.concurrent)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    ids = list(got.values())
    emit(bench="concurrent_claims", accel=mode, cores=os.cpu_count(), claims=args.concurrent, slots_ready=len(waiting),
         served=len(ids), distinct_guests=len(set(ids)),
         from_pool=len(set(ids) & waiting),
         wall_s=round(wall, 2), per_claim_p50=p50(list(took.values())), per_claim_max=round(max(took.values()), 2))
    for sandbox_id in ids:
        mgr.destroy(sandbox_id)

    # an environment with a setup script: from its cache vs setting up on a cold-booted guest
    mgr.config = replace(templated, warm_pool="0")
    pool.refill()
    Environment.create(owner=user, name="deps", setup_script=f"sleep {args.setup_seconds}\nmkdir -p build\n")
    mgr.config = cold_cfg
    w.engine.runner.env_caches.config = replace(cold_cfg, environment_cache="off")
    cold_setup = session_to_agent(w, user, "deps")
    w.engine.runner.env_caches.config = templated
    mgr.config = replace(templated, warm_pool="0")
    session_to_agent(w, user, "deps")  # sets up and keeps the cache
    session_to_agent(w, user, "deps")  # the first from the cache makes its template
    cached = [session_to_agent(w, user, "deps") for _ in range(args.runs)]
    cached_total = [sum(t.values()) for t in cached]
    emit(bench="submit_to_agent_running_env_cache", accel=mode, setup_seconds=args.setup_seconds, runs=len(cached),
         seconds_p50=p50(cached_total), split_p50={k: p50([t[k] for t in cached]) for k in TO_AGENT},
         baseline="the same environment set up on a cold-booted guest", baseline_s=round(sum(cold_setup.values()), 2),
         baseline_split={k: cold_setup[k] for k in TO_AGENT},
         speedup=round(sum(cold_setup.values()) / p50(cached_total), 1))


if __name__ == "__main__":
    sys.exit(main())
