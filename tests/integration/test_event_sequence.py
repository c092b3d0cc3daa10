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
