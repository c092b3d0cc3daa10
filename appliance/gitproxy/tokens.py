"""Per-session git tokens: what a guest holds instead of the real credential.

`issue()` returns the token once; only its SHA-256 is stored (the token is 256 random bits, so a
plain hash is enough: there is nothing to brute-force). A token grants one session read access to
one repository and push access to one branch, until it expires or its session is revoked.

Each token is bound to the sandbox it was issued for: `verify()` accepts it only from that
sandbox's address on the bridge, and only while that sandbox is live. A token copied out of a
guest (printed, logged, read by a colleague) is worthless anywhere else, and dies with its guest
even when the address is handed out again (the new sandbox has another id).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

import peewee

from appliance.db import BaseModel, utcnow
from appliance.errors import ApplianceError
from appliance.models import Sandbox, SandboxState

from .repos import valid_branch_name, valid_key

TOKEN_PREFIX = "agt_"  # recognisable in leaks and scanners
DEFAULT_TTL = 7 * 24 * 3600.0


class GitToken(BaseModel):
    token_hash = peewee.CharField(primary_key=True)  # sha256 hex of the token
    session_id = peewee.CharField(index=True)
    repo_key = peewee.CharField()
    work_branch = peewee.CharField()
    sandbox_id = peewee.CharField(null=True)  # the only guest it works from (None: from nowhere)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "git_token"


@dataclasses.dataclass(frozen=True)
class Grant:
    """What a valid token allows."""

    session_id: str
    repo_key: str
    work_branch: str
    expires_at: dt.datetime

    @property
    def work_ref(self) -> str:
        return f"refs/heads/{self.work_branch}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and 20 < len(token) < 200 and token.isascii()


def issue(session_id: str, repo_key: str, work_branch: str, ttl: float | None = None, *, sandbox_id: str) -> str:
    """A new token for `session_id` on `repo_key`, pushing only `refs/heads/<work_branch>`, usable
    only from sandbox `sandbox_id` while it is live."""
    if not valid_key(repo_key):
        raise ApplianceError(f"repository key {repo_key!r} is not valid")
    if not valid_branch_name(work_branch):
        raise ApplianceError(f"{work_branch!r} is not a valid branch name",
                             hint="use letters, digits and '/', '-', '_', '.' (as git check-ref-format allows)")
    ttl = DEFAULT_TTL if ttl is None else ttl
    if ttl <= 0:
        raise ApplianceError("token lifetime must be positive")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    GitToken.create(token_hash=hash_token(token), session_id=session_id, repo_key=repo_key,
                    work_branch=work_branch, sandbox_id=sandbox_id, created_at=now, expires_at=now + dt.timedelta(seconds=ttl))
    return token


def verify(token: str, remote_addr: str, now: dt.datetime | None = None) -> Grant | None:
    """The grant of a live token presented from its own live sandbox's address; None for anything
    else (unknown, expired, revoked, malformed, another address, a sandbox that is gone)."""
    if not token or not looks_like_token(token):
        return None
    row = GitToken.get_or_none(GitToken.token_hash == hash_token(token))
    if row is None or row.revoked_at is not None or row.expires_at <= (now or utcnow()):
        return None
    if not _from_its_sandbox(row.sandbox_id, remote_addr):
        return None
    return Grant(row.session_id, row.repo_key, row.work_branch, row.expires_at)


def _from_its_sandbox(sandbox_id: str | None, remote_addr: str) -> bool:
    if not sandbox_id or not remote_addr:
        return False
    sandbox = Sandbox.get_or_none(Sandbox.id == sandbox_id)
    return (sandbox is not None and sandbox.state in (SandboxState.CREATING, SandboxState.RUNNING)
            and sandbox.address == remote_addr)


def revoke(session_id: str) -> int:
    """Revoke every live token of a session; returns how many."""
    return (GitToken.update(revoked_at=utcnow())
            .where((GitToken.session_id == session_id) & GitToken.revoked_at.is_null())
            .execute())


def purge(older_than_days: float = 30.0) -> int:
    """Delete rows that expired or were revoked more than `older_than_days` ago."""
    cutoff = utcnow() - dt.timedelta(days=older_than_days)
    return (GitToken.delete()
            .where((GitToken.expires_at < cutoff) | (GitToken.revoked_at < cutoff))
            .execute())
