"""After an auto-fix turn for a review comment: the reply on the comment's thread.

A reply goes once the turn finished (completed: the push went through the git proxy, which set the
session's head; failed: it says so), marked with REPLY_MARK so the appliance never acts on it.
"""

from __future__ import annotations

import logging

from ..db import utcnow
from ..errors import ApplianceError
from ..sessions.models import Event, Turn, TurnStatus
from .apply import REPLY_MARK
from .issues import session_url
from .models import PrReviewComment

log = logging.getLogger(__name__)

MAX_SUMMARY = 2000  # characters of the agent's own account of the turn quoted in a reply
FINISHED = (TurnStatus.COMPLETED, TurnStatus.FAILED, TurnStatus.CANCELLED, TurnStatus.INTERRUPTED)


def reply_text(config, row: PrReviewComment, turn: Turn) -> str:
    session = row.session
    link = session_url(config, session.id)
    if turn.status != TurnStatus.COMPLETED:
        why = (turn.error or turn.status).strip().splitlines()[0][:300] if (turn.error or turn.status) else turn.status
        return f"{REPLY_MARK}\n**appliance:** I could not address this (turn {turn.number} {turn.status}: {why}). {link}"
    before = (Turn.select(Turn.commit_sha).where((Turn.session == session.id) & (Turn.number < turn.number)
                                                 & (Turn.status == TurnStatus.COMPLETED))
              .order_by(Turn.number.desc()).first())
    if not turn.commit_sha or (before is not None and before.commit_sha == turn.commit_sha):
        return f"{REPLY_MARK}\n**appliance:** I looked at this in turn {turn.number} and changed nothing. {link}"
    stat = (Event.select().where((Event.turn == turn.id) & (Event.kind == "diff_stat"))
            .order_by(Event.id.desc()).first())
    size = ""
    if stat is not None:
        d = stat.data or {}
        size = f" (the branch now differs from {session.base_branch} by +{d.get('added', 0)} −{d.get('removed', 0)} " \
               f"in {d.get('files', 0)} files)"
    said = (Event.select().where((Event.turn == turn.id) & (Event.kind == "turn_result"))
            .order_by(Event.id.desc()).first())
    summary = str((said.data or {}).get("summary") or "").strip() if said is not None else ""
    if len(summary) > MAX_SUMMARY:
        summary = summary[:MAX_SUMMARY] + "…"
    return (f"{REPLY_MARK}\n**appliance:** addressed in {turn.commit_sha[:12]}, pushed to {session.work_branch}"
            f"{size}. {link}" + (f"\n\n{summary}" if summary else ""))


def send_pending(applier_for) -> list[str]:
    """Reply for every answered review comment whose turn has finished. `applier_for(repo)` gives the
    repository's Applier (for its forge client)."""
    sent = []
    rows = (PrReviewComment.select().join(Turn, on=(PrReviewComment.turn == Turn.id))
            .where(PrReviewComment.replied_at.is_null() & Turn.status.in_(FINISHED)))
    for row in rows:
        session = row.session
        applier = applier_for(session.repository)
        try:
            text = reply_text(applier.config, row, row.turn)
            applier.forge_client().reply_to_review(session.pr_number, row.thread, text)
        except ApplianceError as e:  # tried again at the next pass
            log.warning("session %s: the reply to review comment %s was not posted: %s", session.id, row.forge_id, e)
            continue
        PrReviewComment.update(replied_at=utcnow()).where(PrReviewComment.id == row.id).execute()
        sent.append(row.forge_id)
    return sent
