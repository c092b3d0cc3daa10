"""Archiving and deleting sessions, deleting archived ones after `archived_session_retention_days`,
and deleting what sessions may be using: environments, and (admins) repositories.

Archiving only hides a session from the default lists (it can be brought back). Deleting removes
what the appliance holds of it: its events, turns, diffs, line comments, git proxy tokens and the
agent's transcript kept on the host. What lives elsewhere stays: the work branch upstream (and any
pull request), and the egress audit log (the admins' record, pruned by its own retention).

A session is never deleted while a turn of it runs or waits (its worker would write into rows that
are gone): the owner cancels it first, or waits for the turn to end.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from appliance_base.config import Config

from ..accounts.models import User
from ..db import database, utcnow
from ..environments import access as environment_access
from ..environments.models import Environment
from ..errors import ApplianceError, Conflict
from ..gitproxy.tokens import GitToken
from ..models import Sandbox
from ..repos.models import Repository
from ..repos.service import delete_repository, get_repository
from . import transcripts
from .access import session_for
from .models import Comment, DiffFile, Event, Session, Status, Turn, TurnStatus

log = logging.getLogger(__name__)


def set_archived(user: User, session_id: str, archived: bool = True) -> Session:
    """Archive (or bring back) a session: the owner and admins."""
    session = session_for(user, session_id, change=True)
    Session.update(archived_at=utcnow() if archived else None).where(Session.id == session.id).execute()
    return Session.get_by_id(session.id)


def delete(user: User, session_id: str, state_dir: str | Path, sandboxes=None) -> str:
    """Delete a session (the owner and admins); Conflict while a turn runs or waits."""
    return delete_session(session_for(user, session_id, change=True), state_dir, sandboxes)


def _busy(session: Session) -> Conflict:
    return Conflict(f"session {session.id} is {session.status.replace('_', ' ')}: a turn is running or waiting, "
                    "so it was not deleted",
                    hint=f"cancel it first ('appliance cancel {session.id}' or the Cancel button), "
                         "or wait for the turn to end")


def _turn_in_flight(session_id: str) -> bool:
    """A turn still queued or running: also right after a cancel, until the runner has stopped it."""
    return Turn.select().where((Turn.session == session_id)
                               & Turn.status.in_((TurnStatus.QUEUED, TurnStatus.RUNNING))).exists()


def delete_session(session: Session, state_dir: str | Path, sandboxes=None) -> str:
    if session.status in Status.ACTIVE or _turn_in_flight(session.id):
        raise _busy(session)
    _release_guest(session, sandboxes)
    with database.atomic():
        if _turn_in_flight(session.id):
            raise _busy(Session.get_by_id(session.id))
        Comment.delete().where(Comment.session == session.id).execute()
        DiffFile.delete().where(DiffFile.session == session.id).execute()
        Event.delete().where(Event.session == session.id).execute()
        Turn.delete().where(Turn.session == session.id).execute()
        GitToken.delete().where(GitToken.session_id == session.id).execute()
        # guarded on the status: a turn queued since the check above keeps the session (and rolls back)
        if not Session.delete().where((Session.id == session.id) & Session.status.not_in(Status.ACTIVE)).execute():
            raise _busy(Session.get_by_id(session.id))
    path = transcripts.stored_path(state_dir, session.id)
    for leftover in (path, path.with_suffix(".where")):
        leftover.unlink(missing_ok=True)
    log.info("deleted session %s", session.id)
    return session.id


def _release_guest(session: Session, sandboxes) -> None:
    """An idle session may still hold its guest: destroy it first (nothing would otherwise)."""
    if not session.sandbox_id:
        return
    sandbox = Sandbox.get_or_none(Sandbox.id == session.sandbox_id)
    if sandbox is None or not sandbox.live:
        return
    if sandboxes is None:
        raise Conflict(f"session {session.id} still has a running guest, so it was not deleted",
                       hint="complete it first ('Done' in the console), then delete it")
    try:
        sandboxes.destroy(sandbox.id)
    except ApplianceError as e:
        log.warning("could not destroy %s of %s: %s", sandbox.id, session.id, e.message)


def purge_archived(config: Config, sandboxes=None, now: dt.datetime | None = None) -> list[str]:
    """Delete the sessions archived more than `archived_session_retention_days` ago (0: none). One
    that runs a turn again is skipped (and deleted at a later pass)."""
    days = config.archived_session_retention_days
    if days <= 0:
        return []
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    deleted = []
    for session in Session.select().where(Session.archived_at.is_null(False) & (Session.archived_at < cutoff)):
        try:
            deleted.append(delete_session(session, config.state_dir, sandboxes))
        except Conflict as e:
            log.info("archived session %s kept for now: %s", session.id, e.message)
    return deleted


# --- environments ----------------------------------------------------------------------------------

def delete_environment(user: User, env_id: int) -> int:
    """Delete an environment of `user`'s; Conflict while a session with it runs or waits for a turn.
    Sessions keep what they started with (their environment snapshot), so finished and idle ones
    lose nothing."""
    env = environment_access.owned(user, env_id)
    busy = list(Session.select(Session.id).where((Session.environment == env) & Session.status.in_(Status.ACTIVE))
                .order_by(Session.created_at))
    if busy:
        named = ", ".join(s.id for s in busy[:5]) + (", …" if len(busy) > 5 else "")
        raise Conflict(f"environment {env.name!r} is used by {len(busy)} running session(s) ({named}); "
                       "it was not deleted",
                       hint="wait for their turns to end, or cancel them ('appliance cancel ID'), then delete it")
    Environment.delete().where(Environment.id == env.id).execute()
    return env.id


# --- repositories ----------------------------------------------------------------------------------

def remove_repository(ref: str | int) -> Repository:
    """An admin removes a repository (by name or id): Conflict naming the sessions that still use it
    (the console, the API and `appliance repo remove` all come here)."""
    from .service import check_repository_unused

    repo = get_repository(ref)
    check_repository_unused(repo)
    delete_repository(repo)
    log.info("removed repository %s", repo.name)
    return repo
