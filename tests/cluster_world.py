"""Worker hosts as real processes sharing only a PostgreSQL database, with control in this process
(the guest-less cluster test and `scripts/bench cluster` use it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from appliance.accounts.models import User
from appliance.cluster.control import ClusterControl
from appliance.cluster.models import TurnAttempt
from appliance.db import open_database
from appliance.repos.models import Repository
from appliance.sessions.models import Session, Turn, TurnStatus
from appliance.sessions.service import NewSession, SessionService

from helpers import ROOT, make_config

CLUSTER_SETTINGS = {"cluster_mode": "on", "turn_runner": "dry-run", "host_heartbeat_interval": 0.5,
                    "host_stale_after": 3.0}


class WorkerProcess:
    def __init__(self, host_id: str, state: Path, database_url: str, capacity: int, turn_seconds: float,
                 **settings):
        """`settings`: more of the worker's configuration (a guest-running worker's network, say)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        env.update({"APPLIANCE_CONFIG": str(state / "no-such-file.toml"), "APPLIANCE_DATABASE_URL": database_url,
                    "APPLIANCE_DRY_RUN_TURN_SECONDS": str(turn_seconds), "PYTHONPATH": str(ROOT)})
        env.update({f"APPLIANCE_{k.upper()}": str(v) for k, v in {**CLUSTER_SETTINGS, **settings}.items()})
        state.mkdir(parents=True, exist_ok=True)
        self.host_id = host_id
        self.log = state / "worker.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli.main", "worker", "--host-id", host_id, "--state-dir", str(state),
             "--capacity", str(capacity)], env=env, cwd=ROOT, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Cluster:
    """Control (admission and re-routing, looping in a thread here) plus worker processes."""

    def __init__(self, root: Path, database_url: str, **settings):
        self.root = root
        self.database_url = database_url
        self.config = make_config(root / "control", database_url=database_url, **{**CLUSTER_SETTINGS, **settings})
        open_database(database_url)
        self.control = ClusterControl(self.config)
        self.service = SessionService(self.config)
        self.workers: dict[str, WorkerProcess] = {}
        self._stop = threading.Event()
        self._loop = threading.Thread(target=self._control_loop, daemon=True)
        self._loop.start()

    def _control_loop(self) -> None:
        while not self._stop.wait(0.2):
            self.control.dispatch_once()

    def add_worker(self, host_id: str, capacity: int = 2, turn_seconds: float = 0.3, **settings) -> WorkerProcess:
        worker = WorkerProcess(host_id, self.root / host_id, self.database_url, capacity, turn_seconds, **settings)
        self.workers[host_id] = worker
        return worker

    def wait_turn(self, turn_id: int, timeout: float = 600.0) -> Turn:
        """The turn once it has ended, whatever the outcome (a worker's death is not its end)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            turn = Turn.get_by_id(turn_id)
            if turn.status in (TurnStatus.COMPLETED, TurnStatus.FAILED, TurnStatus.CANCELLED):
                return turn
            time.sleep(0.5)
        raise AssertionError(f"turn {turn_id} is still {Turn.get_by_id(turn_id).status}; worker logs:\n"
                             + "\n".join(w.log.read_text()[-3000:] for w in self.workers.values()))

    def start_sessions(self, owners: list[str], turns: int) -> list[str]:
        """One session per owner name (in order), each with `turns` turns queued up front."""
        repo = Repository.get_or_none(Repository.name == "acme/app") or Repository.create(name="acme/app",
                                                                                            url="/srv/app.git")
        ids = []
        for name in owners:
            user = User.get_or_none(User.username == name) or User.create(username=name)
            session = self.service.create(user, NewSession(repo.name, f"task of {name}", agent="command",
                                                           command="true"))
            for n in range(2, turns + 1):
                self.service.message(user, session.id, f"step {n}")
            ids.append(session.id)
        return ids

    def wait_all_done(self, session_ids: list[str], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_turns = Turn.select().where(Turn.session.in_(session_ids)
                                             & (Turn.status != TurnStatus.COMPLETED)).count()
            running = (TurnAttempt.select().join(Turn).where(Turn.session.in_(session_ids)
                                                             & TurnAttempt.finished_at.is_null()).count())
            if open_turns == 0 and running == 0:  # the attempt closes just after its turn's row
                return
            for worker in self.workers.values():
                if worker.proc.poll() is not None and worker.proc.returncode != -signal.SIGKILL:
                    raise AssertionError(f"worker {worker.host_id} exited {worker.proc.returncode}:\n"
                                         + worker.log.read_text()[-3000:])
            time.sleep(0.2)
        raise AssertionError(f"{open_turns} turns not completed; worker logs:\n"
                             + "\n".join(w.log.read_text()[-2000:] for w in self.workers.values()))

    def attempts(self, session_ids: list[str]) -> list[TurnAttempt]:
        return list(TurnAttempt.select().join(Turn).where(Turn.session.in_(session_ids)).order_by(TurnAttempt.id))

    def close(self) -> None:
        self._stop.set()
        self._loop.join(10)
        for worker in self.workers.values():
            worker.stop()
        self.control.close()


def max_overlap(intervals: list[tuple]) -> int:
    """The most intervals (start, end) open at one instant; an end at the same instant as a start
    closes first (a slot handed on)."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda p: (p[0], p[1]))
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


def owner_of(session_id: str) -> str:
    return Session.get_by_id(session_id).owner.username
