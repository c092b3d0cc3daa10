"""What a forge fact does to the appliance: the session's PR state and checks change, and — when the
session's auto-fix is on — a failed check or a review comment by someone allowed queues a turn.

Guard rails (each logged when it holds something back):
- a comment counts only when its forge login is mapped to an appliance user (ForgeLogin, set by an
  admin) who may use the repository; anyone else is ignored;
- the appliance's own comments (they carry REPLY_MARK) are never acted on, so replies cannot loop;
- one session queues at most `autofix_max_turns_per_hour` auto-fix turns in any hour.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from ..accounts.models import User
from ..db import utcnow
from ..errors import ApplianceError
from ..repos.models import Repository
from ..sessions.access import may_use_repository
from ..sessions.models import Session, Turn
from ..sessions.stream import emit
from .events import REPLY_MARK, CheckResult, IssueTask, PrState, ReviewComment
from .models import ForgeLogin, PrCheck, PrReviewComment

log = logging.getLogger(__name__)

AUTOFIX = "autofix"  # Turn.source of the turns this module queues


def find_session(repo: Repository, *, branch: str = "", number: int | None = None, sha: str = "",
                 numbers: tuple[int, ...] = ()) -> Session | None:
    """The session whose pull request (or work branch, or pushed head) the fact is about."""
    base = Session.select().where(Session.repository == repo)
    if branch:
        found = base.where(Session.work_branch == branch).first()
        if found:
            return found
    for n in ((number,) if number is not None else ()) + tuple(numbers):
        found = base.where(Session.pr_number == n).first()
        if found:
            return found
    if sha:
        return base.where(Session.head_sha == sha).order_by(Session.updated_at.desc()).first()
    return None


def user_for_login(forge: str, login: str) -> User | None:
    row = ForgeLogin.get_or_none((ForgeLogin.forge == forge) & (ForgeLogin.login == login))
    if row is None or getattr(row.user, "disabled", False):
        return None
    return row.user


def allowed_user(forge: str, login: str, repo: Repository) -> User | None:
    """The appliance user behind `login` when they may use `repo`; else None (logged)."""
    user = user_for_login(forge, login) if login else None
    if user is None:
        log.info("%s login %r is not mapped to an appliance user: its comment on %s is ignored", forge, login, repo.name)
        return None
    if not may_use_repository(user, repo):
        log.info("%s login %r (%s) may not use %s: its comment is ignored", forge, login, user.username, repo.name)
        return None
    return user


def autofix_turns_last_hour(session: Session) -> int:
    since = utcnow() - timedelta(hours=1)
    return Turn.select().where((Turn.session == session.id) & (Turn.source == AUTOFIX)
                               & (Turn.created_at >= since)).count()


class Applier:
    """Applies facts for one repository; `sessions` is the SessionService (queues and starts)."""

    def __init__(self, sessions, forge: str, repo: Repository):
        self.sessions = sessions
        self.config = sessions.config
        self.forge = forge
        self.repo = repo

    def forge_client(self):
        """The repository's forge REST client (tests give SessionService a stand-in)."""
        from ..forges import forge_for

        make = self.sessions.forge_for or forge_for
        return make(self.repo, state_dir=self.config.state_dir)

    def apply(self, facts: list) -> list[str]:
        """Each fact's outcome, in words (the webhook answers with them; tests read them)."""
        done = []
        for fact in facts:
            if isinstance(fact, PrState):
                done.append(self.pr_state(fact))
            elif isinstance(fact, CheckResult):
                done.append(self.check(fact))
            elif isinstance(fact, ReviewComment):
                done.append(self.review_comment(fact))
            elif isinstance(fact, IssueTask):
                from .issues import start_from_issue

                done.append(start_from_issue(self, fact))
        return done

    # -- PR state and checks ---------------------------------------------------------------------
    def pr_state(self, fact: PrState) -> str:
        session = find_session(self.repo, branch=fact.branch, number=fact.number)
        if session is None:
            return "no session"
        fields = {"pr_state": fact.state, "pr_number": fact.number, "updated_at": utcnow()}
        if not session.pr_url and fact.url:
            fields["pr_url"] = fact.url
        Session.update(**fields).where(Session.id == session.id).execute()
        if session.pr_state != fact.state:
            emit(session, "pull_request_state", {"state": fact.state, "number": fact.number,
                                                 "text": f"pull request #{fact.number} is {fact.state}"})
        return f"pr {fact.state}"

    def check(self, fact: CheckResult) -> str:
        session = find_session(self.repo, branch=fact.branch, sha=fact.sha, numbers=fact.numbers)
        if session is None:
            return "no session"
        row = PrCheck.get_or_none((PrCheck.session == session.id) & (PrCheck.name == fact.name))
        was = row.state if row else ""
        if row is None:
            row = PrCheck.create(session=session.id, name=fact.name, state=fact.state, excerpt=fact.excerpt)
        else:
            row.state, row.updated_at = fact.state, utcnow()
            if fact.excerpt or fact.state != "failing":
                row.excerpt = fact.excerpt
            if fact.state != "failing":
                row.turn = None  # a later failure is a new one
            row.save()
        refresh_checks(session)
        if fact.state != "failing" or was == "failing":
            return f"check {fact.state}"
        return self._autofix(session, f"check {fact.name}", check_prompt(session, fact), lambda turn: (
            PrCheck.update(turn=turn).where(PrCheck.id == row.id).execute()))

    # -- review comments -------------------------------------------------------------------------
    def review_comment(self, fact: ReviewComment) -> str:
        session = find_session(self.repo, branch=fact.branch, number=fact.number)
        if session is None:
            return "no session"
        if REPLY_MARK in fact.body:
            return "own comment"
        if PrReviewComment.select().where((PrReviewComment.session == session.id)
                                          & (PrReviewComment.forge_id == fact.forge_id)).exists():
            return "known comment"
        row = PrReviewComment.create(session=session.id, forge_id=fact.forge_id, thread=fact.thread,
                                     author_login=fact.login, path=fact.path, line=fact.line, body=fact.body)
        user = allowed_user(self.forge, fact.login, self.repo)
        if user is None:
            PrReviewComment.update(ignored="outsider").where(PrReviewComment.id == row.id).execute()
            return "ignored: outsider"
        outcome = self._autofix(session, f"comment {fact.forge_id}", comment_prompt(fact, user), lambda turn: (
            PrReviewComment.update(turn=turn).where(PrReviewComment.id == row.id).execute()))
        if not outcome.startswith("queued"):
            PrReviewComment.update(ignored=outcome).where(PrReviewComment.id == row.id).execute()
        return outcome

    # -- queuing -----------------------------------------------------------------------------------
    def _autofix(self, session: Session, what: str, prompt: str, link) -> str:
        session = Session.get_by_id(session.id)
        if not session.autofix:
            return "auto-fix off"
        cap = self.config.autofix_max_turns_per_hour
        if autofix_turns_last_hour(session) >= cap:
            log.warning("session %s: %s not acted on: %d auto-fix turns in the last hour (the cap)",
                        session.id, what, cap)
            emit(session, "log", {"stream": "appliance", "text": f"auto-fix: {what} not acted on, {cap} auto-fix "
                                                                "turns in the last hour already (send a message "
                                                                "to ask for it yourself)"})
            return "capped"
        try:
            turn = self.sessions.queue_turn(session, prompt, AUTOFIX)
        except ApplianceError as e:
            log.info("session %s: %s not queued: %s", session.id, what, e)
            return f"not queued: {e.message}"
        link(turn)
        return f"queued turn {turn.number}"


def refresh_checks(session: Session) -> None:
    """The session's one-word check summary from its checks: failing beats pending beats passing."""
    states = {r.state for r in PrCheck.select(PrCheck.state).where(PrCheck.session == session.id)}
    summary = next((s for s in ("failing", "pending", "passing") if s in states), "")
    Session.update(pr_checks=summary).where(Session.id == session.id).execute()


def check_prompt(session: Session, fact: CheckResult) -> str:
    text = [f"The check \"{fact.name}\" failed on the pull request of this branch ({session.work_branch}). "
            "Find the cause, fix it, and commit."]
    if fact.excerpt:
        text.append(f"\nWhat the forge reported (the end of it):\n```\n{fact.excerpt}\n```")
    return "\n".join(text)


def comment_prompt(fact: ReviewComment, user: User) -> str:
    where = f"{fact.path}:{fact.line}" if fact.path and fact.line else (fact.path or "the pull request")
    return (f"{user.username} (as {fact.login} on the forge) left a review comment on {where}:\n\n"
            f"{fact.body.strip()}\n\nAddress it in the code and commit.")
