"""A session's event stream: rows in the database plus a wake-up, so followers (API long-poll,
websockets, `appliance logs -f`) read 'events after N' without gaps or repeats and without polling
the database in a tight loop.

Each event also gets its session's next sequence number in the statement that writes it (`seq`):
with more than one process writing (worker hosts), a global serial id can commit out of order.
The wake-up is in-process (a condition) and, on PostgreSQL, `NOTIFY appliance_events` in the
emitting transaction, which a listener thread in every following process turns into the same
in-process wake-up (listener.py)."""

from __future__ import annotations

import threading

import peewee

from ..db import database, utcnow
from ..redact import redact
from .models import Event, Session, Turn

_changed = threading.Condition()
CHANNEL = "appliance_events"


def on_postgresql() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def wake_followers() -> None:
    with _changed:
        _changed.notify_all()


def emit(session: Session | str, kind: str, data: dict | None = None, turn: Turn | None = None) -> Event:
    session_id = session if isinstance(session, str) else session.id
    pg = on_postgresql()
    prior = Event.alias()
    next_seq = prior.select(peewee.fn.COALESCE(peewee.fn.MAX(prior.seq), 0) + 1).where(prior.session == session_id)
    with database.atomic():
        if pg:  # one writer per session at a time, so two processes never compute the same seq
            database.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (session_id,))
        # every viewer of a shared session reads this: no credential-shaped string is stored
        event_id = Event.insert(session=session_id, turn=turn, kind=kind, data=redact(data or {}),
                                created_at=utcnow(), seq=next_seq).execute()
        if pg:  # delivered when this transaction commits, to every listening process
            database.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, session_id))
    wake_followers()
    return Event.get_by_id(event_id)


def events_after(session_id: str, after: int = 0, limit: int = 500) -> list[Event]:
    """Reading one session by id is safe across processes: emit() takes the session's advisory lock
    before the insert draws its id and keeps it until the commit, so a session's ids commit in
    order (a global serial can only commit out of order *between* sessions)."""
    return list(Event.select().where((Event.session == session_id) & (Event.id > after))
                .order_by(Event.id).limit(limit))


def wait_for_events(session_id: str, after: int, timeout: float) -> list[Event]:
    """Events after `after`, waiting up to `timeout` seconds for the first one."""
    if on_postgresql():
        from . import listener

        listener.ensure_started(database.obj)
    with _changed:
        # Looked up under the lock emit() notifies with: an event committed after this lookup
        # wakes the wait below, so none is missed between the two.
        found = events_after(session_id, after)
        if found or timeout <= 0:
            return found
        _changed.wait(timeout)
    return events_after(session_id, after)
