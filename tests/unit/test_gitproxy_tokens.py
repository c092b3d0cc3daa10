"""Per-session git tokens: shown once, stored hashed, scoped, revocable, expiring."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.errors import ApplianceError
from appliance.gitproxy import tokens
from appliance.gitproxy.tokens import GitToken
from appliance.models import Sandbox, SandboxState

ADDR = "10.213.0.9"


@pytest.fixture
def sb(db):
    """The guest the tokens are issued to (see test_security_git_tokens for the binding itself)."""
    return Sandbox.create(profile="minimal", image_dir="-", vcpus=1, memory_mb=512, disk_gb=4, address=ADDR,
                          purpose="sess-1", state=SandboxState.RUNNING).id


def test_issue_verify_and_only_the_hash_is_stored(sb):
    token = tokens.issue("sess-1", "acme/api", "claude/fix-1", ttl=60, sandbox_id=sb)
    assert token.startswith(tokens.TOKEN_PREFIX) and len(token) > 40
    grant = tokens.verify(token, ADDR)
    assert (grant.session_id, grant.repo_key, grant.work_branch) == ("sess-1", "acme/api", "claude/fix-1")
    assert grant.work_ref == "refs/heads/claude/fix-1"
    row = GitToken.get()
    assert row.token_hash == tokens.hash_token(token) and token not in row.token_hash
    assert all(token not in str(v) for v in row.__data__.values())
    assert tokens.issue("sess-1", "acme/api", "claude/fix-1", sandbox_id=sb) != token  # random each time


def test_unknown_malformed_expired_and_revoked_tokens_fail(sb):
    token = tokens.issue("sess-1", "acme/api", "b", ttl=60, sandbox_id=sb)
    other = tokens.issue("sess-2", "acme/api", "c", ttl=60, sandbox_id=sb)
    for bad in ("", "agt_", "x" * 50, token + "x", token[:-1], token.upper()):
        assert tokens.verify(bad, ADDR) is None
    later = dt.datetime.utcnow() + dt.timedelta(seconds=61)
    assert tokens.verify(token, ADDR, now=later) is None
    assert tokens.revoke("sess-1") == 1
    assert tokens.verify(token, ADDR) is None
    assert tokens.verify(other, ADDR) is not None  # other sessions keep theirs
    assert tokens.revoke("sess-1") == 0


def test_issue_refuses_bad_branches_and_keys(sb):
    for branch in ("", "-x", "a..b", "a b", "a~1", "refs/heads/x:y", "x.lock", "x/", "@{u}", "a\\b"):
        with pytest.raises(ApplianceError):
            tokens.issue("s", "acme/api", branch, sandbox_id=sb)
    for key in ("", "../etc", "a/../b", "acme/api.git", "/abs"):
        with pytest.raises(ApplianceError):
            tokens.issue("s", key, "b", sandbox_id=sb)
    with pytest.raises(ApplianceError):
        tokens.issue("s", "acme/api", "b", ttl=0, sandbox_id=sb)


def test_purge_drops_old_rows(sb):
    tokens.issue("old", "r", "b", ttl=1, sandbox_id=sb)
    tokens.issue("new", "r", "b", ttl=3600, sandbox_id=sb)
    GitToken.update(expires_at=dt.datetime(2000, 1, 1)).where(GitToken.session_id == "old").execute()
    assert tokens.purge(older_than_days=1) == 1
    assert [t.session_id for t in GitToken.select()] == ["new"]
