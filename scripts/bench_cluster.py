#!/usr/bin/env python3
"""`scripts/bench cluster`: more than one host on the guest-less path (turn_runner = "dry-run"), as
JSON lines. Worker processes share only a throw-away PostgreSQL with control (this process):

* turns per minute with 1 worker host vs 2 (8 sessions x 4 turns, capacity 2 each), and the ratio;
* failover: seconds from SIGKILL of the worker running a turn to that turn running on the other host
  (from the database: the re-run attempt's start), against host_stale_after as the baseline.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from appliance.cluster.models import Host, TurnAttempt  # noqa: E402
from appliance.db import utcnow  # noqa: E402

from cluster_world import CLUSTER_SETTINGS, Cluster  # noqa: E402
from postgres import PostgresCluster  # noqa: E402

SESSIONS, TURNS, TURN_SECONDS = 8, 4, 0.5


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def wait_registered(hosts: list[str]) -> None:
    deadline = time.monotonic() + 60
    while Host.select().where(Host.id.in_(hosts)).count() < len(hosts):
        if time.monotonic() > deadline:
            raise SystemExit(f"workers {hosts} did not register")
        time.sleep(0.1)
    time.sleep(1.0)  # their Procrastinate workers start listening just after


def throughput(pg: PostgresCluster, root: Path, hosts: list[str]) -> float:
    world = Cluster(root, pg.new_database())
    try:
        for host in hosts:
            world.add_worker(host, capacity=2, turn_seconds=TURN_SECONDS)
        wait_registered(hosts)
        started = time.monotonic()
        sessions = world.start_sessions([f"user{i}" for i in range(SESSIONS)], TURNS)
        world.wait_all_done(sessions)
        return SESSIONS * TURNS / ((time.monotonic() - started) / 60)
    finally:
        world.close()


def failover(pg: PostgresCluster, root: Path) -> float:
    world = Cluster(root, pg.new_database())
    try:
        doomed = world.add_worker("bench-a", capacity=1, turn_seconds=5.0)
        wait_registered(["bench-a"])
        sessions = world.start_sessions(["alice"], 1)
        while not TurnAttempt.select().where(TurnAttempt.host == "bench-a").exists():
            time.sleep(0.05)
        world.add_worker("bench-b", capacity=1, turn_seconds=0.1)
        wait_registered(["bench-a", "bench-b"])
        doomed.kill()
        killed = utcnow()
        world.wait_all_done(sessions)
        again = TurnAttempt.get(TurnAttempt.host == "bench-b")
        return (again.started_at - killed).total_seconds()
    finally:
        world.close()


def main() -> int:
    pg = PostgresCluster()
    pg.start()
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        one = throughput(pg, root / "one", ["bench-1"])
        two = throughput(pg, root / "two", ["bench-1", "bench-2"])
        emit(bench="cluster", metric="turns_per_minute", one_worker=round(one, 1), two_workers=round(two, 1),
             ratio=round(two / one, 2), sessions=SESSIONS, turns=TURNS, dry_run_turn_seconds=TURN_SECONDS)
        took = failover(pg, root / "failover")
        stale = CLUSTER_SETTINGS["host_stale_after"]
        emit(bench="cluster", metric="failover_seconds", seconds=round(took, 2), host_stale_after=stale,
             ratio=round(took / stale, 2))
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
