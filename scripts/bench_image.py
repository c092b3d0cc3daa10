#!/usr/bin/env python3
"""`scripts/bench image`: what the default image costs, as JSON lines on stdout.

* build of `general` from nothing (a scratch image dir with an empty cache) and again with the
  image store's caches (apt .debs, npm tarballs) but no image: the cached build's ratio to the cold
  one; the reuse of an unchanged image (no build at all) as the floor;
* image size (qcow2 on disk, root file system) of `general` vs `minimal`;
* cold boot (create → SSH answers) of `general` vs `minimal`, p50 over --boots each, in the same run.

`--skip-build` measures sizes and boots on the host's current images only.
"""

from __future__ import annotations

import argparse
import json
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
from vmimages.build import build_image  # noqa: E402

from helpers import make_config, shared_image_dir  # noqa: E402


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def timed_build(profile: str, image_dir: Path) -> tuple[float, object]:
    start = time.monotonic()
    image = build_image(profile, image_dir, progress=lambda line: print(line, file=sys.stderr, flush=True))
    return round(time.monotonic() - start, 1), image


def bench_builds(profile: str) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="appliance-bench-image-", dir="/var/tmp"))
    try:
        cold, image = timed_build(profile, scratch)          # nothing cached
        shutil.rmtree(image.dir.parent / image.dir.name)     # the image gone, its caches kept
        (scratch / profile).unlink()
        cached, _ = timed_build(profile, scratch)
        reused, _ = timed_build(profile, scratch)            # unchanged: reused by hash
        emit(bench="image_build", profile=profile, cold_s=cold, cached_s=cached, reused_s=reused,
             ratio_cached_vs_cold=round(cached / cold, 3), stages_s=image.manifest["build"]["stages_s"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def bench_sizes_and_boots(boots: int) -> None:
    state = Path(tempfile.mkdtemp(prefix="appliance-bench-", dir="/var/tmp"))
    state.chmod(0o711)
    cfg = make_config(state, bridge="aplbench1", subnet="10.223.0.0/24", tap_prefix="aplq",
                      egress_table="applbenchimg", image_dir=shared_image_dir())
    open_database(cfg.database_url)
    hv = Hypervisor(cfg.libvirt_uri)
    mgr = SandboxManager(cfg, hv)
    p50 = {}
    try:
        for profile in ("minimal", "general"):
            image = mgr.image_store().get(profile)
            emit(bench="image_size", profile=profile, qcow2_mib=round(image.disk.stat().st_size / 2**20),
                 rootfs_mib=round(image.manifest["rootfs_bytes"] / 2**20), packages=len(image.manifest["packages"]))
            times = []
            for _ in range(boots):
                start = time.monotonic()
                sandbox = mgr.create(SandboxRequest(profile=profile, memory_mb=2048))
                times.append(time.monotonic() - start)
                mgr.destroy(sandbox.id)
            p50[profile] = statistics.median(times)
        emit(bench="cold_boot", accel=mgr.accel().mode, boots=boots,
             general_p50_s=round(p50["general"], 1), minimal_p50_s=round(p50["minimal"], 1),
             ratio_general_vs_minimal=round(p50["general"] / p50["minimal"], 2))
    finally:
        mgr.reconcile(creating_grace=0)
        bridge.delete_link(cfg.bridge)
        hv.close()
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--skip-build", action="store_true", help="do not time builds of general")
    args = parser.parse_args()
    if not args.skip_build:
        bench_builds("general")
    bench_sizes_and_boots(args.boots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
