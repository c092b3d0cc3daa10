"""Admission: as many sessions run as capacity allows, the rest wait their turn in order."""

from __future__ import annotations

import threading
import time

from appliance.accounts.models import User
from appliance.db import open_database, utcnow
from appliance.repos.models import Repository
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sandbox.manager import SandboxManager
from appliance.sessions.engine import Engine
from appliance.sessions.models import Session, Status, Turn
from appliance.sessions.service import NewSession

from helpers import make_config


class HeldRunner:
    """Runs a turn until the test lets it finish (the real runner boots guests: tested in tests/vm)."""

    def __init__(self):
        self.started: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self.done: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def run(self, turn_id: int) -> None:
        turn = Turn.get_by_id(turn_id)
        sid = turn.session_id
        with self.lock:
            self.started.append(f"{sid}#{turn.number}")
            gate = self.release.setdefault(sid, threading.Event())
            done = self.done[sid] = threading.Event()
        Turn.update(status="running").where(Turn.id == turn_id).execute()
        Session.update(status=Status.RUNNING).where(Session.id == sid).execute()
        gate.wait(30)
        gate.clear()
        Turn.update(status="completed", finished_at=utcnow()).where(Turn.id == turn_id).execute()
        Session.update(status=Status.IDLE).where(Session.id == sid).execute()
        done.set()

    def finish(self, sid: str) -> None:
        """Let the session's running turn end, and wait until it has."""
        with self.lock:
            self.release.setdefault(sid, threading.Event()).set()
            done = self.done[sid]
        assert done.wait(10)


def engine_with(tmp_path, **settings):
    cfg = make_config(tmp_path / "state", **settings)
    open_database(cfg.database_url)
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    engine = Engine(cfg, SandboxManager(cfg, Hypervisor(f"test://{node}"), egress=object()))
    engine.runner = HeldRunner()
    Repository.create(name="acme/app", url="/srv/app.git")
    return engine


def settle(engine, want_running: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        engine.dispatch_once()
        if len(engine.running_sessions()) == want_running and all(
                Session.get_by_id(s).status == Status.RUNNING for s in engine.running_sessions()):
            return
        time.sleep(0.05)
    raise AssertionError(f"{len(engine.running_sessions())} running, wanted {want_running}")


def start(engine, user, prompt):
    return engine.service.create(user, NewSession("acme/app", prompt, agent="command", command="true"))


def test_two_run_in_parallel_and_the_third_waits(tmp_path):
    engine = engine_with(tmp_path, max_running_sessions=2)
    alice = User.create(username="alice")
    a, b, c = (start(engine, alice, p) for p in ("one", "two", "three"))
    settle(engine, 2)
    assert set(engine.running_sessions()) == {a.id, b.id}, "oldest first"
    assert Session.get_by_id(c.id).status == Status.QUEUED
    assert Turn.get(Turn.session == c.id).status == "queued"

    engine.runner.finish(a.id)
    settle(engine, 2)
    assert set(engine.running_sessions()) == {b.id, c.id}
    assert Session.get_by_id(a.id).status == Status.IDLE
    for s in (b, c):
        engine.runner.finish(s.id)
    settle(engine, 0)


def test_per_user_limit_lets_others_through(tmp_path):
    engine = engine_with(tmp_path, max_running_sessions=3, max_running_per_user=1)
    alice, bob = User.create(username="alice"), User.create(username="bob")
    a1, a2 = start(engine, alice, "a1"), start(engine, alice, "a2")
    b1 = start(engine, bob, "b1")
    settle(engine, 2)
    assert set(engine.running_sessions()) == {a1.id, b1.id}
    assert Session.get_by_id(a2.id).status == Status.QUEUED
    for s in (a1, b1):
        engine.runner.finish(s.id)
    settle(engine, 1)
    assert engine.running_sessions() == [a2.id]
    engine.runner.finish(a2.id)
    settle(engine, 0)


def test_a_sessions_turns_run_one_at_a_time_in_order(tmp_path):
    engine = engine_with(tmp_path, max_running_sessions=4)
    alice = User.create(username="alice")
    s = start(engine, alice, "first")
    settle(engine, 1)
    engine.service.message(alice, s.id, "second")  # steering: queued behind the running turn
    engine.service.message(alice, s.id, "third")
    engine.dispatch_once()
    assert engine.runner.started == [f"{s.id}#1"]
    engine.runner.finish(s.id)
    settle(engine, 1)  # turn 2 starts by itself: messages sent while a turn runs are not lost
    assert engine.runner.started == [f"{s.id}#1", f"{s.id}#2"]
    engine.runner.finish(s.id)
    settle(engine, 1)
    assert engine.runner.started == [f"{s.id}#1", f"{s.id}#2", f"{s.id}#3"]
    engine.runner.finish(s.id)
    settle(engine, 0)
    assert [t.status for t in Turn.select().where(Turn.session == s.id).order_by(Turn.number)] == ["completed"] * 3
