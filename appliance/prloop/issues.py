"""Sessions started from the forge: an issue given the configured label, or a comment
`@appliance <task>` on an issue, by someone who may use the repository. The session's task is the
issue's title and body (and the comment's task); the appliance comments back with its link."""

from __future__ import annotations

import logging

from ..errors import ApplianceError
from ..sessions.service import NewSession
from .apply import REPLY_MARK, allowed_user
from .events import IssueTask

log = logging.getLogger(__name__)


def session_url(config, session_id: str) -> str:
    base = config.public_url.rstrip("/") or f"http://{config.listen_host}:{config.listen_port}"
    return f"{base}/sessions/{session_id}"


def issue_prompt(fact: IssueTask) -> str:
    parts = []
    if fact.trigger == "comment" and fact.task:
        parts.append(fact.task)
    parts.append(f"Issue #{fact.number}: {fact.title.strip()}")
    if fact.body.strip():
        parts.append(fact.body.strip())
    return "\n\n".join(parts)


def start_from_issue(applier, fact: IssueTask) -> str:
    config, repo = applier.config, applier.repo
    if fact.trigger == "label":
        label = config.forge_session_label.strip()
        if not label or label not in [t.strip() for t in fact.task.split(",")]:
            return "label not configured"
    user = allowed_user(applier.forge, fact.login, repo)
    if user is None:
        return "ignored: outsider"
    try:
        session = applier.sessions.create(user, NewSession(repository=repo.id, prompt=issue_prompt(fact)))
    except ApplianceError as e:
        log.info("issue #%d of %s: no session started: %s", fact.number, repo.name, e)
        return f"not started: {e.message}"
    link = session_url(config, session.id)
    try:
        forge = applier.forge_client()
        forge.comment_on_issue(fact.number, f"{REPLY_MARK}\nThe appliance started a session on this issue "
                                            f"for {user.username}: {link}")
    except ApplianceError as e:  # the session runs anyway; the link is in the console
        log.warning("issue #%d of %s: the link back was not posted: %s", fact.number, repo.name, e)
    return f"started {session.id}"
