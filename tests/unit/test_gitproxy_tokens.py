"""Per-session git tokens: shown once, stored hashed, scoped, revocable, expiring."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.errors import ApplianceError
from appliance.gitproxy import tokens
from appliance.gitproxy.tokens import GitToken


def test_issue_verify_and_only_the_hash_is_stored(db):
    token = tokens.issue("sess-1", "acme/api", "claude/fix-1", ttl=60)
    assert token.startswith(tokens.TOKEN_PREFIX) and len(token) > 40
    grant = tokens.verify(token)
    assert (grant.session_id, grant.repo_key, grant.work_branch) == ("sess-1", "acme/api", "claude/fix-1")
    assert grant.work_ref == "refs/heads/claude/fix-1"
    row = GitToken.get()
    assert row.token_hash == tokens.hash_token(token) and token not in row.token_hash
    assert all(token not in str(v) for v in row.__data__.values())
    assert tokens.issue("sess-1", "acme/api", "claude/fix-1") != token  # random each time


def test_unknown_malformed_expired_and_revoked_tokens_fail(db):
    token = tokens.issue("sess-1", "acme/api", "b", ttl=60)
    other = tokens.issue("sess-2", "acme/api", "c", ttl=60)
    for bad in ("", "agt_", "x" * 50, token + "x", token[:-1], token.upper()):
        assert tokens.verify(bad) is None
    later = dt.datetime.utcnow() + dt.timedelta(seconds=61)
    assert tokens.verify(token, now=later) is None
    assert tokens.revoke("sess-1") == 1
    assert tokens.verify(token) is None
    assert tokens.verify(other) is not None  # other sessions keep theirs
    assert tokens.revoke("sess-1") == 0


def test_issue_refuses_bad_branches_and_keys(db):
    for branch in ("", "-x", "a..b", "a b", "a~1", "refs/heads/x:y", "x.lock", "x/", "@{u}", "a\\b"):
        with pytest.raises(ApplianceError):
            tokens.issue("s", "acme/api", branch)
    for key in ("", "../etc", "a/../b", "acme/api.git", "/abs"):
        with pytest.raises(ApplianceError):
            tokens.issue("s", key, "b")
    with pytest.raises(ApplianceError):
        tokens.issue("s", "acme/api", "b", ttl=0)


def test_purge_drops_old_rows(db):
    tokens.issue("old", "r", "b", ttl=1)
    tokens.issue("new", "r", "b", ttl=3600)
    GitToken.update(expires_at=dt.datetime(2000, 1, 1)).where(GitToken.session_id == "old").execute()
    assert tokens.purge(older_than_days=1) == 1
    assert [t.session_id for t in GitToken.select()] == ["new"]
