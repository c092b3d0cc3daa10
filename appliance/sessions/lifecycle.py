"""The one place a session's status changes.

`move_to` checks the transition table, writes with a guard on the status it moves from (so two
writers racing — a cancel and the runner, say — cannot both win), and emits the status event in
the same breath. A refused move is a bug (`IllegalTransition`), not a race to paper over; a lost
race returns False and leaves the row as the winner wrote it.
"""

from __future__ import annotations

from appliance.errors import ApplianceError

from ..db import utcnow
from .models import Session, Status, Turn, TurnStatus
from .stream import emit

RUNNING = (Status.PROVISIONING, Status.SETTING_UP, Status.RUNNING)

# status → the statuses that may follow it. A running status may repeat itself with a new detail
# ("booting" → "cloning"); a restart sends a running session back to queued or idle (`recover`).
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.QUEUED: frozenset({Status.PROVISIONING, Status.CANCELLED, Status.FAILED}),
    Status.PROVISIONING: frozenset({Status.PROVISIONING, Status.SETTING_UP, Status.RUNNING, Status.CANCELLED,
                                    Status.FAILED, Status.QUEUED, Status.IDLE}),
    Status.SETTING_UP: frozenset({Status.RUNNING, Status.CANCELLED, Status.FAILED, Status.QUEUED, Status.IDLE}),
    Status.RUNNING: frozenset({Status.IDLE, Status.CANCELLED, Status.FAILED, Status.QUEUED}),
    Status.IDLE: frozenset({Status.QUEUED, Status.COMPLETED, Status.CANCELLED, Status.FAILED}),
    Status.FAILED: frozenset({Status.QUEUED, Status.COMPLETED}),  # a follow-up retries; or the owner is done
    Status.COMPLETED: frozenset(),
    Status.CANCELLED: frozenset(),
}
FINISHED = (Status.COMPLETED, Status.CANCELLED)  # these set finished_at


class IllegalTransition(ApplianceError):
    """Code asked for a status change the table does not allow (a bug)."""


def allowed(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def move_to(session: Session | str, status: str, detail: str = "", turn: Turn | None = None, *,
            from_status: str | None = None, **fields) -> bool:
    """Move `session` to `status` (with `detail` and other column `fields`) and emit the event.

    `from_status` is the status the caller saw; without it the current row is read. Returns False
    when the row no longer has that status (someone else moved it first): nothing is written then.
    """
    session_id = session if isinstance(session, str) else session.id
    current = from_status if from_status is not None else Session.get_by_id(session_id).status
    if not allowed(current, status):
        raise IllegalTransition(f"session {session_id}: {current} → {status} is not an allowed status "
                                "change", hint="this is a bug; please report it with the session's log")
    now = utcnow()
    if status in FINISHED:
        fields.setdefault("finished_at", now)
    written = Session.update(status=status, status_detail=detail, updated_at=now, **fields).where(
        (Session.id == session_id) & (Session.status == current)).execute()
    if not written:
        return False
    emit(session_id, "status", {"status": status, "detail": detail} if detail else {"status": status}, turn)
    return True


def requeue_if_more(session_id: str) -> None:
    """Messages sent while the turn ran (steering) wait as queued turns: run them next."""
    session = Session.get_by_id(session_id)
    pending = Turn.select().where((Turn.session == session_id) & (Turn.status == TurnStatus.QUEUED)).exists()
    if pending and session.status in (Status.IDLE, Status.FAILED):
        move_to(session, Status.QUEUED, "next queued message", from_status=session.status)
