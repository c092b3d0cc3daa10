#!/usr/bin/env python3
"""`scripts/bench templates`: a guest from a template vs a cold boot, as JSON lines on stdout.

Measured in one run, on the default profile (`--profile` for another), with the same guest size:
* cold boot: create → SSH answers with the sandbox key, p50 over --boots (guest_templates off);
* template: the one-off cost of making it (boot + save), then create → SSH answers, p50 over
  --boots clones, with the split of a clone's start (state loaded and resumed, re-identified);
* memory: host RSS and private (Pss) memory of an idle clone's qemu vs an idle cold-booted one's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from appliance.db import open_database  # noqa: E402
from appliance.sandbox.hypervisor import Hypervisor  # noqa: E402
from appliance.sandbox.manager import SandboxManager, SandboxRequest  # noqa: E402
from netpolicy import bridge  # noqa: E402

from helpers import make_config  # noqa: E402


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, Pss) of a process in MiB: Pss shares a mapped file's pages among its users."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss / 1024, pss / 1024


def boots(mgr: SandboxManager, n: int, request: SandboxRequest) -> list[float]:
    out = []
    for _ in range(n):
        started = time.monotonic()
        sandbox = mgr.create(request)
        out.append(time.monotonic() - started)
        mgr.destroy(sandbox.id)
    return out


def idle_memory(mgr: SandboxManager, hv: Hypervisor, request: SandboxRequest, settle: float) -> tuple[float, float]:
    sandbox = mgr.create(request)
    time.sleep(settle)
    try:
        return memory_mib(hv.qemu_pid(sandbox.domain_name))
    finally:
        mgr.destroy(sandbox.id)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--profile", default="minimal")
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds an idle guest waits before measuring")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="appliance-bench-tmpl-", dir="/var/tmp"))
    state.chmod(0o711)
    ram = Path(f"/dev/shm/appliance-bench-templates-{os.getpid()}")
    net = dict(bridge="aplbencht", subnet="10.232.0.0/24", tap_prefix="aplq", egress_table="applbencht",
               default_profile=args.profile, memory_mb=args.memory_mb, template_dir=str(ram))
    cold_cfg = make_config(state, **net)
    open_database(cold_cfg.database_url)
    hv = Hypervisor(cold_cfg.libvirt_uri)
    cold = SandboxManager(cold_cfg, hv)
    warm = SandboxManager(make_config(state, **net, guest_templates="on"), hv, egress=cold.egress)
    request = SandboxRequest()
    try:
        mode = cold.accel().mode
        cold_boots = boots(cold, args.boots, request)

        started = time.monotonic()
        first = warm.create(request)  # the template is made here
        made = time.monotonic() - started
        warm.destroy(first.id)
        clone_boots = boots(warm, args.boots, request)

        cold_p50, clone_p50 = statistics.median(cold_boots), statistics.median(clone_boots)
        emit(bench="template_start", accel=mode, profile=args.profile, boots=args.boots,
             p50_s=round(clone_p50, 2), samples_s=[round(b, 2) for b in clone_boots],
             template_made_s=round(made, 1), baseline="cold boot (create → SSH answers)",
             baseline_p50_s=round(cold_p50, 2), baseline_samples_s=[round(b, 2) for b in cold_boots],
             speedup=round(cold_p50 / clone_p50, 1))

        cold_rss, cold_pss = idle_memory(cold, hv, request, args.settle)
        clone_rss, clone_pss = idle_memory(warm, hv, request, args.settle)
        emit(bench="template_memory", accel=mode, memory_mb=args.memory_mb, clone_rss_mib=round(clone_rss),
             clone_pss_mib=round(clone_pss), baseline="an idle cold-booted guest", cold_rss_mib=round(cold_rss),
             cold_pss_mib=round(cold_pss), pss_ratio=round(clone_pss / cold_pss, 2))
    finally:
        for mgr in (warm, cold):
            for leftover in mgr.list():
                mgr.destroy(leftover.id)
        cold.reconcile(creating_grace=0)
        cold.egress.remove_rules()
        bridge.delete_link(cold_cfg.bridge)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(ram, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
