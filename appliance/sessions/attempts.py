"""Best-of-N: one task started as 1–4 sessions ("attempts"), each in its own guest and on its own
work branch, grouped by a group id; compared side by side; "pick this one" keeps the chosen
session and completes the others (cancels those still running), so only one goes on to a PR.

Each attempt is an ordinary session (admission, budgets, sharing as usual); the group is only
what ties them together.
"""

from __future__ import annotations

import secrets

from ..accounts.models import User
from ..db import database
from ..errors import Invalid, NotFound
from .access import session_for, visible_sessions
from .models import Event, Session, Status
from .stream import emit

MAX_ATTEMPTS = 4
PICKED = "attempt_picked"  # the event on the chosen session


def new_group_id() -> str:
    return "grp-" + secrets.token_hex(5)


def check_count(attempts) -> int:
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        raise Invalid(f"attempts must be a whole number from 1 to {MAX_ATTEMPTS}, got {attempts!r}",
                      hint="ask for 1 (one session) up to 4 attempts of the same task")
    return attempts


def create(service, user: User, req, attempts: int = 1) -> list[Session]:
    """`attempts` sessions of the task `req` (a NewSession), all or none: if one cannot start (a
    budget, a bad field), none is kept. One attempt is a plain session without a group."""
    check_count(attempts)
    if attempts == 1:
        return [service.create(user, req)]
    group = new_group_id()
    with database.atomic():
        ids = []
        for number in range(1, attempts + 1):
            session = service.create(user, req)
            Session.update(group_id=group, attempt=number).where(Session.id == session.id).execute()
            ids.append(session.id)
    return [Session.get_by_id(i) for i in ids]


def members(user: User, group_id: str) -> list[Session]:
    """The group's sessions `user` may see, by attempt; a group with none of them visible does
    not exist for them (404)."""
    sessions = list(visible_sessions(user).where(Session.group_id == group_id).order_by(Session.attempt))
    if not sessions:
        raise NotFound(f"no attempts group {group_id}", hint="see 'appliance tasks'")
    return sessions


def picked(sessions: list[Session]) -> str | None:
    """The id of the attempt that was picked, if one was."""
    ids = [s.id for s in sessions]
    row = Event.select(Event.session).where(Event.session.in_(ids) & (Event.kind == PICKED)).first()
    return row.session_id if row is not None else None


def pick(service, user: User, group_id: str, session_id: str) -> list[Session]:
    """Keep `session_id`, finish the others: idle or failed ones are completed, running or queued
    ones cancelled (their guests go, their branches stay). Only the owner (or an admin) picks."""
    sessions = members(user, group_id)
    chosen = next((s for s in sessions if s.id == session_id), None)
    if chosen is None:
        raise Invalid(f"{session_id} is not an attempt of {group_id}",
                      hint="pick one of: " + ", ".join(s.id for s in sessions))
    for s in sessions:
        session_for(user, s.id, change=True)  # 404 / 403 before anything changes
    already = picked(sessions)
    if already is not None:
        raise Invalid(f"{already} was already picked in {group_id}", hint="the others are finished already")
    if chosen.status in (Status.COMPLETED, Status.CANCELLED):
        raise Invalid(f"{chosen.id} is {chosen.status}: it cannot go on", hint="pick an attempt that can")
    for s in sessions:
        if s.id == chosen.id:
            continue
        current = Session.get_by_id(s.id)
        if current.status in (Status.IDLE, Status.FAILED):
            service.complete(user, s.id)
        elif current.status not in Status.FINAL:
            service.cancel(user, s.id)
    emit(chosen, PICKED, {"group": group_id, "attempt": chosen.attempt,
                          "text": f"picked: attempt {chosen.attempt} of {len(sessions)} is the one kept"})
    return [Session.get_by_id(s.id) for s in sessions]
