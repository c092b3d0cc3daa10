"""The session lifecycle (appliance/sessions/lifecycle.py): every allowed and every forbidden
status change, the guard against a racing writer, and the status event each change emits."""

from __future__ import annotations

import itertools

import pytest

from appliance.accounts.models import User
from appliance.repos.models import Repository
from appliance.sessions.lifecycle import TRANSITIONS, IllegalTransition, allowed, move_to
from appliance.sessions.models import Event, Session, Status

PAIRS = list(itertools.product(Status.ALL, Status.ALL))
ALLOWED = [(a, b) for a, b in PAIRS if b in TRANSITIONS[a]]
FORBIDDEN = [(a, b) for a, b in PAIRS if b not in TRANSITIONS[a]]


@pytest.fixture
def make_session(db):
    owner = User.create(username="alice")
    repo = Repository.create(name="acme/api", url="/srv/git/api.git", default_branch="main")
    counter = itertools.count()

    def make(status: str) -> Session:
        n = next(counter)
        return Session.create(owner=owner, repository=repo, base_branch="main", work_branch=f"w/{n}",
                              status=status)

    return make


def test_the_table_names_every_status_and_only_statuses():
    assert set(TRANSITIONS) == set(Status.ALL)
    assert set().union(*TRANSITIONS.values()) <= set(Status.ALL)
    assert TRANSITIONS[Status.COMPLETED] == TRANSITIONS[Status.CANCELLED] == frozenset()


@pytest.mark.parametrize("current,new", ALLOWED)
def test_allowed_change_is_written_and_announced(make_session, current, new):
    s = make_session(current)
    assert move_to(s, new, "because") is True
    row = Session.get_by_id(s.id)
    assert (row.status, row.status_detail) == (new, "because")
    assert (row.finished_at is not None) == (new in (Status.COMPLETED, Status.CANCELLED))
    events = [e.data for e in Event.select().where((Event.session == s.id) & (Event.kind == "status"))]
    assert events == [{"status": new, "detail": "because"}]


@pytest.mark.parametrize("current,new", FORBIDDEN)
def test_forbidden_change_is_refused_and_changes_nothing(make_session, current, new):
    s = make_session(current)
    with pytest.raises(IllegalTransition, match=f"{current} → {new}"):
        move_to(s, new)
    assert Session.get_by_id(s.id).status == current
    assert Event.select().where(Event.session == s.id).count() == 0
    assert not allowed(current, new)


def test_a_writer_that_saw_an_old_status_loses_the_race(make_session):
    """The runner read 'running'; a cancel got there first: the runner's move writes nothing."""
    s = make_session(Status.RUNNING)
    assert move_to(s, Status.CANCELLED, "cancelled by the owner")
    assert move_to(s, Status.IDLE, "waiting for input", from_status=Status.RUNNING) is False
    row = Session.get_by_id(s.id)
    assert row.status == Status.CANCELLED and row.status_detail == "cancelled by the owner"
    assert [e.data["status"] for e in Event.select().where(Event.session == s.id)] == [Status.CANCELLED]


def test_extra_columns_are_written_with_the_status(make_session):
    s = make_session(Status.RUNNING)
    move_to(s, Status.FAILED, "boom", error="the whole message")
    assert Session.get_by_id(s.id).error == "the whole message"


def test_no_module_writes_a_session_status_by_hand():
    """Every status change goes through move_to: no `Session.update(status=…)` elsewhere."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in list((root / "appliance").rglob("*.py")) + list((root / "webui").rglob("*.py")):
        if path.name == "lifecycle.py" or "migrations" in path.parts:
            continue
        text = path.read_text()
        if "Session.update(status=" in text or "Session.update(**{\"status\"" in text:
            offenders.append(str(path.relative_to(root)))
    assert offenders == []
