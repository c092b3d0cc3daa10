"""A session's event stream: rows in the database (ids only grow) plus an in-process wake-up, so
followers (API long-poll, websockets, `appliance logs -f`) read 'events after N' without gaps or
repeats and without polling the database in a tight loop."""

from __future__ import annotations

import threading

from ..db import utcnow
from ..redact import redact
from .models import Event, Session, Turn

_changed = threading.Condition()


def emit(session: Session | str, kind: str, data: dict | None = None, turn: Turn | None = None) -> Event:
    session_id = session if isinstance(session, str) else session.id
    # every viewer of a shared session reads this: no credential-shaped string is stored
    event = Event.create(session=session_id, turn=turn, kind=kind, data=redact(data or {}), created_at=utcnow())
    with _changed:
        _changed.notify_all()
    return event


def events_after(session_id: str, after: int = 0, limit: int = 500) -> list[Event]:
    return list(Event.select().where((Event.session == session_id) & (Event.id > after))
                .order_by(Event.id).limit(limit))


def wait_for_events(session_id: str, after: int, timeout: float) -> list[Event]:
    """Events after `after`, waiting up to `timeout` seconds for the first one."""
    with _changed:
        # Looked up under the lock emit() notifies with: an event committed after this lookup
        # wakes the wait below, so none is missed between the two.
        found = events_after(session_id, after)
        if found or timeout <= 0:
            return found
        _changed.wait(timeout)
    return events_after(session_id, after)
