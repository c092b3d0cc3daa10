"""Answer-only turns: a question is not a task.

A turn whose agent changed no file (and made no commit) pushes nothing — no empty work branch
appears upstream — and its result is the agent's answer. A session whose turns only answered has
nothing a pull request could propose, so "Create PR" is refused with the reason (console, API, CLI).
A later turn that changes files pushes as usual.

Whether a turn changed anything is read from the rows, not stored: a turn's `commit_sha` is the
branch head after it (None while nothing was ever pushed), so a completed turn changed files when
its head differs from the previous completed turn's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import Event, Session, Status, Turn
from .pushes import diff_is_current


def moved(guest_head: str, pushed: str | None, checked_out: str | None) -> bool:
    """Should the turn push? When the guest's HEAD (after committing what the agent left) is past
    what the branch already holds — or, before the first push, past the commit the checkout started
    from. Not knowing either (an old row): push, as before."""
    known = pushed or checked_out
    return not known or guest_head != known


def changed_files(turn: Turn, previous_head: str | None) -> bool:
    """Did this completed turn change the branch? `previous_head`: the head after the turn before."""
    return turn.status == "completed" and turn.commit_sha is not None and turn.commit_sha != previous_head


def answer_only_turns(session: Session) -> set[int]:
    """The numbers of the session's completed turns that changed no file."""
    numbers, head = set(), None
    for turn in session.turns_in_order():
        if turn.status != "completed":
            continue
        if not changed_files(turn, head):
            numbers.add(turn.number)
        head = turn.commit_sha or head
    return numbers


@dataclass(frozen=True)
class Blocker:
    """Why a pull request cannot be created now, and what to do."""

    reason: str
    hint: str


def pull_request_blocker(session: Session) -> Blocker | None:
    """None when a pull request may be created (or exists already: creating returns it)."""
    if session.pr_url:
        return None
    if not session.head_sha:
        answered = Turn.select().where((Turn.session == session.id) & (Turn.status == "completed")).exists()
        if answered:
            return Blocker("the session changed no files: its turns only answered, so there is nothing to propose",
                           "ask for a change in a follow-up; a turn that changes files pushes the branch")
        if session.status in Status.ACTIVE:
            return Blocker("nothing has been pushed yet", "wait for the first turn to finish")
        return Blocker("nothing has been pushed", "send a follow-up that changes files")
    if not diff_is_current(session):
        return Blocker(f"the branch moved to {session.head_sha[:12]} after its diff was made",
                       "send a follow-up so the diff shows what the branch holds, then create the pull request")
    return None


def latest_answer(session: Session) -> str:
    """The agent's final text of the session's newest finished turn (its answer), or ''."""
    last = (Event.select().where((Event.session == session.id) & (Event.kind == "turn_result"))
            .order_by(Event.id.desc()).first())
    return (last.data or {}).get("summary", "") if last is not None else ""
