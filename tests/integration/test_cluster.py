"""More than one host, without guests: two `appliance worker` processes with their own state dirs
and host ids share only a throw-away PostgreSQL with control (here); turns run as Procrastinate jobs
through the dry-run turn runner (turn_runner = "dry-run": no guest boots; everything else is real).
Every assertion reads the database."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from appliance.cluster.models import TurnAttempt
from appliance.errors import ConfigError
from appliance.models import Sandbox
from appliance.sessions.models import Session, Turn, TurnStatus

from cluster_world import Cluster, max_overlap, owner_of
from helpers import make_config

OWNERS = ["alice"] * 5 + ["bob"] * 3  # alice alone could fill both hosts: the per-user limit must hold her back
CAPACITY = 2
PER_USER = 3


@pytest.fixture
def cluster(tmp_path, pg_url):
    world = Cluster(tmp_path, pg_url, max_running_per_user=PER_USER)
    yield world
    world.close()


def turns_by_session(session_ids):
    out = {}
    for sid in session_ids:
        out[sid] = list(Turn.select().where(Turn.session == sid).order_by(Turn.number))
    return out


def assert_in_order_without_overlap(attempts, session_ids):
    by_session = defaultdict(list)
    for a in attempts:
        by_session[a.turn.session_id].append(a)
    for sid in session_ids:
        runs = sorted(by_session[sid], key=lambda a: a.started_at)
        assert [a.turn.number for a in runs if a.outcome == TurnStatus.COMPLETED] == [1, 2, 3, 4], sid
        for before, after in zip(runs, runs[1:], strict=False):
            assert before.finished_at <= after.started_at, f"{sid}: turns {before.turn.number} and {after.turn.number} overlapped"


def assert_limits_held(attempts, session_ids):
    by_host = defaultdict(list)
    for a in attempts:
        by_host[a.host].append((a.started_at, a.finished_at))
    for host, intervals in by_host.items():
        assert max_overlap(intervals) <= CAPACITY, f"host {host} ran more than {CAPACITY} turns at once"
    by_owner = defaultdict(list)
    for sid, turns in turns_by_session(session_ids).items():
        by_owner[owner_of(sid)] += [(t.started_at, t.finished_at) for t in turns]
    for owner, intervals in by_owner.items():
        assert max_overlap(intervals) <= PER_USER, f"{owner} had more than {PER_USER} sessions running"
    assert max_overlap(by_owner["alice"]) == PER_USER  # the limit was reached, so it was tested


def test_two_worker_hosts_run_every_turn_once_in_order_on_the_guests_host(cluster):
    cluster.add_worker("h16a", capacity=CAPACITY)
    cluster.add_worker("h16b", capacity=CAPACITY)
    sessions = cluster.start_sessions(OWNERS, turns=4)
    cluster.wait_all_done(sessions)

    attempts = cluster.attempts(sessions)
    assert len(attempts) == 8 * 4  # every turn ran exactly once
    assert sorted(a.turn_id for a in attempts) == sorted(t.id for ts in turns_by_session(sessions).values() for t in ts)
    assert all(a.outcome == TurnStatus.COMPLETED and a.finished_at for a in attempts)
    assert_in_order_without_overlap(attempts, sessions)
    for sid in sessions:  # the first turn's host made the guest; the later ones followed it there
        hosts = [a.host for a in sorted((a for a in attempts if a.turn.session_id == sid), key=lambda a: a.turn.number)]
        guest = Sandbox.get_by_id(Session.get_by_id(sid).sandbox_id)
        assert hosts == [guest.host] * 4, sid
    assert {a.host for a in attempts} == {"h16a", "h16b"}  # both hosts ran work
    assert_limits_held(attempts, sessions)


def test_a_killed_worker_s_turns_are_found_stalled_and_finish_on_the_other_host(cluster):
    doomed = cluster.add_worker("h16a", capacity=CAPACITY, turn_seconds=1.0)
    cluster.add_worker("h16b", capacity=CAPACITY, turn_seconds=1.0)
    sessions = cluster.start_sessions(OWNERS, turns=4)
    deadline = time.monotonic() + 60
    while not TurnAttempt.select().where((TurnAttempt.host == "h16a") & TurnAttempt.finished_at.is_null()).exists():
        assert time.monotonic() < deadline, "h16a never started a turn"
        time.sleep(0.05)
    doomed.kill()  # SIGKILL mid-turn
    cluster.wait_all_done(sessions)

    attempts = cluster.attempts(sessions)
    lost = [a for a in attempts if a.host == "h16a" and a.outcome == "host-lost"]
    assert lost, "the killed worker's running turn was not found stalled"
    for a in lost:
        again = [b for b in attempts if b.turn_id == a.turn_id and b.id != a.id]
        assert [(b.host, b.outcome) for b in again] == [("h16b", TurnStatus.COMPLETED)]
    completed = defaultdict(int)
    for a in attempts:
        completed[a.turn_id] += a.outcome == TurnStatus.COMPLETED
    odd = [(a.turn_id, a.turn.number, a.host, a.outcome, a.started_at, a.finished_at) for a in attempts
           if completed[a.turn_id] != 1]
    assert len(completed) == 32 and set(completed.values()) == {1}, odd  # every turn completed exactly once
    assert_in_order_without_overlap(attempts, sessions)
    killed_at = min(a.finished_at for a in lost)
    assert not [a for a in attempts if a.host == "h16a" and a.started_at > killed_at]
    for sid in sessions:  # every session ends on the surviving host's guest
        assert Sandbox.get_by_id(Session.get_by_id(sid).sandbox_id).host == "h16b"


def test_more_than_one_host_on_sqlite_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(ConfigError) as e:
        make_config(tmp_path, cluster_mode="on")
    assert "needs PostgreSQL" in e.value.message and "postgresql://" in e.value.hint


def test_appliance_serve_with_cluster_mode_on_is_the_control_role(tmp_path, pg_url):
    """`appliance serve` admits turns as jobs (no bridge, no guests of its own); a worker runs them."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    from appliance.accounts.models import User
    from appliance.db import open_database
    from appliance.repos.models import Repository
    from appliance.sessions.service import NewSession, SessionService

    from cluster_world import CLUSTER_SETTINGS, WorkerProcess
    from helpers import ROOT

    open_database(pg_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update({f"APPLIANCE_{k.upper()}": str(v) for k, v in CLUSTER_SETTINGS.items()})
    env.update({"APPLIANCE_CONFIG": str(tmp_path / "none.toml"), "APPLIANCE_STATE_DIR": str(tmp_path / "control"),
                "APPLIANCE_DATABASE_URL": pg_url, "APPLIANCE_LISTEN_PORT": str(port),
                "APPLIANCE_BRIDGE": "aplh16nobr", "PYTHONPATH": str(ROOT)})
    log = tmp_path / "serve.log"
    control = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "serve"], env=env, cwd=ROOT,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert control.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        user = User.create(username="carol")
        Repository.create(name="acme/app", url="/srv/app.git")
        cfg = make_config(tmp_path / "client", database_url=pg_url, **CLUSTER_SETTINGS)
        session = SessionService(cfg).create(user, NewSession("acme/app", "do it", agent="command", command="true"))
        worker = WorkerProcess("h16c", tmp_path / "h16c", pg_url, capacity=1, turn_seconds=0.1)
        deadline = time.monotonic() + 60
        while not TurnAttempt.select().join(Turn).where((Turn.session == session.id)
                                                        & TurnAttempt.finished_at.is_null(False)).exists():
            assert time.monotonic() < deadline, log.read_text() + worker.log.read_text()
            time.sleep(0.2)
        turn = Turn.get(Turn.session == session.id)
        assert turn.status == TurnStatus.COMPLETED and turn.job_id is not None
        assert [(a.host, a.outcome) for a in TurnAttempt.select().where(TurnAttempt.turn == turn.id)] == [
            ("h16c", TurnStatus.COMPLETED)]
        assert not os.path.exists("/sys/class/net/aplh16nobr")  # control made no bridge of its own
    finally:
        control.terminate()
        control.wait(30)
        if worker:
            worker.stop()


def test_a_draining_host_puts_back_what_it_pulls_and_the_other_runs_it(cluster):
    from appliance.cluster.hosts import set_draining
    from appliance.cluster.models import Host

    cluster.add_worker("h16a", capacity=CAPACITY)
    deadline = time.monotonic() + 60
    while Host.get_or_none(Host.id == "h16a") is None:  # registered (its row exists before it pulls)
        assert time.monotonic() < deadline, "h16a never registered"
        time.sleep(0.1)
    set_draining("h16a", True)
    sessions = cluster.start_sessions(["alice", "bob"], turns=2)
    # h16a is the only worker for now: it pulls the `any` jobs and must put them back
    cluster.add_worker("h16b", capacity=CAPACITY)
    cluster.wait_all_done(sessions)
    attempts = cluster.attempts(sessions)
    assert len(attempts) == 4 and {a.host for a in attempts} == {"h16b"}
