"""What the git proxy really received: the session's head.

The git proxy calls `record_push(grant, sha)` (in its request thread, with a database connection)
after upstream accepted a push of the session's work branch. That sha — never anything the guest
prints — is the session's `head_sha`, so the reviewed diff is the code the branch holds. A push
outside a turn (something the agent left running) moves the head but not the diff: pull requests
wait until a turn has diffed what the branch holds (`diff_is_current`).
"""

from __future__ import annotations

from ..db import utcnow
from ..gitproxy.tokens import Grant
from .models import Session, Status, Turn
from .stream import emit


def record_push(grant: Grant, sha: str) -> None:
    session = Session.get_or_none(Session.id == grant.session_id)
    if session is None:
        return
    Session.update(head_sha=sha, updated_at=utcnow()).where(Session.id == session.id).execute()
    text = f"the appliance received {grant.work_branch} at {sha[:12]}"
    if session.status not in Status.ACTIVE:  # e.g. a process the agent left behind
        text += " outside a turn: the diff shown is older than the branch until the next turn"
    emit(session.id, "log", {"stream": "git", "text": text})


def diff_is_current(session: Session) -> bool:
    """Does the session's latest diff (its last finished turn's commit) show what the branch holds?"""
    last = (Turn.select(Turn.commit_sha).where((Turn.session == session.id) & (Turn.status == "completed"))
            .order_by(Turn.number.desc()).first())
    return last is not None and last.commit_sha == session.head_sha
