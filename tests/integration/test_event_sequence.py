"""Events carry a per-session sequence number written with them, on SQLite and on PostgreSQL; on
PostgreSQL another process's event wakes this process's followers (LISTEN/NOTIFY)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from appliance.accounts.models import User
from appliance.db import open_database
from appliance.repos.models import Repository
from appliance.sessions import listener
from appliance.sessions.models import Event, Session
from appliance.sessions.stream import emit, wait_for_events

from helpers import ROOT


def two_sessions() -> tuple[str, str]:
    owner = User.create(username="alice")
    repo = Repository.create(name="acme/app", url="/srv/app.git")
    a = Session.create(owner=owner, repository=repo, base_branch="main", work_branch="w/a")
    b = Session.create(owner=owner, repository=repo, base_branch="main", work_branch="w/b")
    return a.id, b.id


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'a.db'}"
    return request.getfixturevalue("pg_url")


def test_each_session_counts_its_own_events_from_one(any_db):
    open_database(any_db)
    a, b = two_sessions()
    for kind in ("status", "log", "turn_end"):
        emit(a, kind, {})
    emit(b, "status", {})
    emit(a, "log", {})
    assert [e.seq for e in Event.select().where(Event.session == a).order_by(Event.id)] == [1, 2, 3, 4]
    assert [e.seq for e in Event.select().where(Event.session == b)] == [1]


def test_a_follower_here_is_woken_by_an_event_another_process_emits(pg_url):
    open_database(pg_url)
    a, _ = two_sessions()
    assert wait_for_events(a, 0, 0) == []  # starts the listener
    code = ("import sys; from appliance.db import open_database; from appliance.sessions.stream import emit; "
            f"open_database({pg_url!r}); emit({a!r}, 'log', {{'text': 'from afar'}})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
    events = wait_for_events(a, 0, 30)
    assert [e.data for e in events] == [{"text": "from afar"}]
    assert [e.seq for e in events] == [1]
    for _ in range(300):  # the notification itself reached the listener (not only the re-read after a timeout)
        if a in listener.received:
            break
        wait_for_events(a, events[-1].id, 0.1)
    assert a in listener.received


def test_a_follower_by_id_misses_nothing_while_two_processes_write_one_session(pg_url):
    """Following "events after id N" is safe across processes: the session's lock spans the id and
    the commit, so a session's ids commit in order and a follower never steps over a late one."""
    from appliance.sessions.stream import events_after

    open_database(pg_url)
    a, _ = two_sessions()
    # each event is emitted in a transaction of the writer's that lasts a little longer (as a
    # runner's would): without the lock, the other writer's later id commits first
    code = ("import sys, time; from appliance.db import database, open_database; "
            "from appliance.sessions.stream import emit; "
            f"open_database({pg_url!r})\n"
            "for i in range(60):\n"
            "    with database.atomic():\n"
            f"        emit({a!r}, 'log', {{'text': sys.argv[1] + str(i)}})\n"
            "        time.sleep(0.005 * (i % 3))")
    writers = [subprocess.Popen([sys.executable, "-c", code, name], cwd=ROOT) for name in ("x", "y")]
    seen, last = [], 0
    while any(w.poll() is None for w in writers) or len(seen) < 120:
        batch = events_after(a, last)
        seen.extend(e.seq for e in batch)
        last = batch[-1].id if batch else last
        assert seen == list(range(1, len(seen) + 1)), "the follower stepped over an event"
        if all(w.poll() is not None for w in writers) and not batch and len(seen) < 120:
            break
    assert [w.wait(60) for w in writers] == [0, 0]
    assert seen == list(range(1, 121))
