"""Security review, hole 1: a session's git token must work only from its own live guest, die with
that guest, and never reach what others read (events, logs).

Each test is one attack from the review (issue 11), run against the real git proxy WSGI app, the
real token store and the real event stream on SQLite.
"""

from __future__ import annotations

import base64
import logging

import pytest
from werkzeug.test import Client

from appliance.accounts.models import User
from appliance.gitproxy import tokens
from appliance.gitproxy.mirror import MirrorStore
from appliance.gitproxy.server import GitProxy
from appliance.gitproxy.tokens import GitToken
from appliance.models import Sandbox, SandboxState
from appliance.redact import RedactingFilter
from appliance.repos.models import Repository
from appliance.sessions.models import Event, Session, Status
from appliance.sessions.runner import TurnRunner
from appliance.sessions.stream import emit

REPO = "acme/api"
BRANCH = "claude/fix-1"


def _sandbox(session_id: str, address: str, state: str = SandboxState.RUNNING) -> Sandbox:
    return Sandbox.create(profile="minimal", image_dir="/img", vcpus=1, memory_mb=512, disk_gb=4,
                          address=address, purpose=session_id, state=state)


def _session(session_id: str, sandbox: Sandbox | None, status: str = Status.IDLE) -> Session:
    owner = User.get_or_create(username="alice")[0]
    repo = Repository.get_or_create(name=REPO, defaults={"url": "/srv/api.git"})[0]
    return Session.create(id=session_id, owner=owner, repository=repo, title="t",
                          base_branch="main", work_branch=BRANCH, status=status,
                          sandbox_id=sandbox.id if sandbox else None)


def _get(proxy: GitProxy, token: str, remote_addr: str) -> int:
    auth = base64.b64encode(f"git:{token}".encode()).decode()
    resp = Client(proxy).get(f"/{REPO}.git/info/refs", query_string={"service": "git-upload-pack"},
                             headers={"Authorization": f"Basic {auth}"},
                             environ_base={"REMOTE_ADDR": remote_addr})
    return resp.status_code


@pytest.fixture
def proxy(cfg, db):
    # The repository is unknown to this proxy: a request that passes authentication gets 404,
    # one that does not gets 401; that difference is what these tests read.
    return GitProxy(MirrorStore.from_config(cfg), lambda key: None)


def test_a_token_is_refused_from_another_guest(proxy):
    """The review's attack: a team mate copies the owner's token from the events and uses it
    from his own guest."""
    owners = _sandbox("ses-owner", "10.213.0.5")
    _sandbox("ses-mate", "10.213.0.6")
    token = tokens.issue("ses-owner", REPO, BRANCH, sandbox_id=owners.id)
    assert _get(proxy, token, "10.213.0.6") == 401
    assert _get(proxy, token, "127.0.0.1") == 401
    assert _get(proxy, token, "10.213.0.5") == 404  # its own guest gets past authentication


def test_a_token_dies_with_its_guest(proxy):
    """A guest destroyed (idle expiry, completion, cancel, admin) leaves a token that works nowhere,
    even from a new guest that got the same address."""
    first = _sandbox("ses-owner", "10.213.0.5")
    token = tokens.issue("ses-owner", REPO, BRANCH, sandbox_id=first.id)
    Sandbox.update(state=SandboxState.DESTROYED).where(Sandbox.id == first.id).execute()
    _sandbox("ses-other", "10.213.0.5")  # the address is handed out again
    assert _get(proxy, token, "10.213.0.5") == 401


def test_releasing_a_guest_revokes_the_sessions_tokens(cfg, db):
    """Idle expiry and completion release the guest: its tokens are revoked at once, whatever the
    session's status (idle sessions used to keep theirs for git_token_ttl, 7 days)."""
    sb = _sandbox("ses-idle", "10.213.0.7", state=SandboxState.DESTROYED)
    _session("ses-idle", sb, status=Status.IDLE)
    tokens.issue("ses-idle", REPO, BRANCH, sandbox_id=sb.id)
    runner = TurnRunner(cfg, sandboxes=None, git_remote=None, mirrors=None, git=None)
    runner.release_guest("ses-idle")
    assert GitToken.select().where(GitToken.revoked_at.is_null()).count() == 0


def test_a_token_never_reaches_the_events(db):
    """`git remote -v` output (or anything else carrying a credential) is copied into events that
    every viewer reads: what is token-shaped is redacted before it is stored."""
    sb = _sandbox("ses-owner", "10.213.0.5")
    session = _session("ses-owner", sb)
    token = tokens.issue("ses-owner", REPO, BRANCH, sandbox_id=sb.id)
    secrets_ = [token, "sk-ant-api03-" + "A1b2" * 20, "ghp_" + "x" * 36, "glpat-" + "y" * 20]
    emit(session, "tool_result", {
        "text": f"origin\thttp://git:{token}@10.213.0.1:3130/acme/api.git (fetch)",
        "nested": [{"env": f"ANTHROPIC_API_KEY={secrets_[1]}"}, f"token {secrets_[2]} and {secrets_[3]}"],
    })
    stored = Event.select().order_by(Event.id.desc()).get().data
    text = repr(stored)
    for secret in secrets_:
        assert secret not in text
    assert "10.213.0.1:3130/acme/api.git" in text  # the rest stays readable
    assert "[redacted]" in text


def test_a_password_in_a_url_never_reaches_the_events(db):
    session = _session("ses-owner", None)
    emit(session, "log", {"text": "cloning https://bob:hunter2-secret@example.com/x.git"})
    assert "hunter2-secret" not in repr(Event.select().order_by(Event.id.desc()).get().data)


def test_a_token_never_reaches_the_logs(caplog):
    """Log lines (the daemon's console, journald) get the same redaction."""
    token = "agt_" + "Q" * 43
    logger = logging.getLogger("test.security.redact")
    handler_filter = RedactingFilter()
    logger.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="test.security.redact"):
            logger.info("guest said %s", f"http://git:{token}@10.0.0.1/x.git")
            try:
                raise RuntimeError(f"clone of http://git:{token}@10.0.0.1/x.git failed")
            except RuntimeError:
                logger.exception("turn failed")
    finally:
        logger.removeFilter(handler_filter)
    assert token not in caplog.text and "[redacted]" in caplog.text


def test_tokens_from_before_the_binding_are_bound_to_their_sessions_guest_or_revoked(tmp_path):
    """The upgrade (m0008): a live token goes with its session's current guest, or dies."""
    import importlib

    import peewee

    from appliance.db import migration_names

    old = peewee.SqliteDatabase(str(tmp_path / "old.db"))
    with old.connection_context():
        for name in migration_names():
            if name >= "m0008":
                break
            importlib.import_module(f"appliance.migrations.{name}").apply(old)
        old.execute_sql("INSERT INTO user (id, username, display_name, is_admin, created_at, webhook_url, email) "
                        "VALUES (1, 'alice', '', 0, '2026-01-01', '', '')")
        old.execute_sql("INSERT INTO repository (id, name, url, default_branch, credential_kind, credential_username, "
                        "forge, forge_api_url, forge_project, created_at) "
                        "VALUES (1, 'acme/api', '/srv/api.git', 'main', 'none', '', 'none', '', '', '2026-01-01')")
        for sid, sandbox in (("ses-live", "'sb-1'"), ("ses-gone", "NULL")):
            old.execute_sql("INSERT INTO session (id, owner_id, repository_id, environment_snapshot, agent, title, "
                            "base_branch, work_branch, visibility, hide_owner, status, status_detail, sandbox_id, "
                            "diff_added, diff_removed, created_at, updated_at) VALUES "
                            f"('{sid}', 1, 1, '{{}}', 'command', '', 'main', 'b-{sid}', 'private', 0, 'idle', '', "
                            f"{sandbox}, 0, 0, '2026-01-01', '2026-01-01')")
            old.execute_sql("INSERT INTO git_token (token_hash, session_id, repo_key, work_branch, created_at, "
                            f"expires_at) VALUES ('h-{sid}', '{sid}', 'acme/api', 'b', '2026-01-01', '2999-01-01')")
        importlib.import_module("appliance.migrations.m0008_git_token_sandbox").apply(old)
        rows = {h: (sb, revoked) for h, sb, revoked in old.execute_sql(
            "SELECT token_hash, sandbox_id, revoked_at FROM git_token")}
    assert rows["h-ses-live"] == ("sb-1", None)
    assert rows["h-ses-gone"][0] is None and rows["h-ses-gone"][1] is not None
