"""What the git proxy really received: the session's head.

The git proxy calls `record_push(grant, sha)` (in its request thread, with a database connection)
after upstream accepted a push of the session's work branch. That sha — never anything the guest
prints — is the session's `head_sha`, so the reviewed diff is the code the branch holds.
"""

from __future__ import annotations

from ..db import utcnow
from ..gitproxy.tokens import Grant
from .models import Session
from .stream import emit


def record_push(grant: Grant, sha: str) -> None:
    Session.update(head_sha=sha, updated_at=utcnow()).where(Session.id == grant.session_id).execute()
    emit(grant.session_id, "log", {"stream": "git",
                                   "text": f"the appliance received {grant.work_branch} at {sha[:12]}"})
