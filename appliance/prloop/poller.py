"""For forges that cannot reach the appliance: the state, checks and review comments of every open pull request,
fetched with the forge's REST API (the daemon runs `poll` every `forge_poll_interval` seconds), and
the replies that are due (`replies`)."""

from __future__ import annotations

import logging

from ..errors import ApplianceError
from ..sessions.models import Session
from . import replies
from .apply import Applier
from .events import CheckResult, PrState, ReviewComment, bounded

log = logging.getLogger(__name__)



def open_pull_requests() -> list[Session]:
    return list(Session.select().where(Session.pr_number.is_null(False)
                                       & Session.pr_state.in_(("open", "")))
                .order_by(Session.updated_at))


def poll(sessions) -> list[str]:
    """Refresh every open pull request; then send the replies that are due. Returns what changed."""
    done = []
    for session in open_pull_requests():
        repo = session.repository
        applier = Applier(sessions, repo.forge, repo)
        try:
            forge = applier.forge_client()
            pr = forge.get_pull_request(session.pr_number)
            done.append(f"{session.id}: " + applier.pr_state(PrState(session.work_branch, pr.number, pr.state, pr.url)))
            if pr.state == "open":
                for check in forge.pull_request_checks(pr.number):
                    done.append(f"{session.id}: " + applier.check(CheckResult(
                        name=check.name, state=check.state, excerpt=bounded(check.excerpt), branch=session.work_branch)))
                for note in forge.review_notes(pr.number):  # the ones seen before are known by id
                    outcome = applier.review_comment(ReviewComment(
                        forge_id=note.id, thread=note.thread, login=note.login, body=note.body, path=note.path,
                        line=note.line, branch=session.work_branch, number=pr.number))
                    if outcome not in ("known comment", "own comment"):
                        done.append(f"{session.id}: {outcome}")
        except ApplianceError as e:  # one forge down must not stop the others
            log.warning("polling the pull request of %s failed: %s", session.id, e)
    done += [f"replied {c}" for c in send_replies(sessions)]
    return done


def send_replies(sessions) -> list[str]:
    return replies.send_pending(lambda repo: Applier(sessions, repo.forge, repo))
