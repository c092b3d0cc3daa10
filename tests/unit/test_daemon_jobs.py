"""The daemon's periodic work is scheduled, including the purge of old git proxy tokens."""

from __future__ import annotations

import datetime as dt

from appliance.daemon import TOKEN_RETENTION_DAYS, Daemon
from appliance.db import utcnow
from appliance.gitproxy import tokens
from appliance.gitproxy.tokens import GitToken

from helpers import make_config


def test_jobs_are_scheduled_and_the_purge_runs(tmp_path):
    daemon = Daemon(make_config(tmp_path / "s", libvirt_uri="test:///default"))
    try:
        daemon.schedule_jobs()
        assert {j.id for j in daemon.scheduler.get_jobs()} == {"reconcile", "expire-idle", "purge-git-tokens",
                                                                    "purge-archived-sessions", "forge-replies",
                                                                    "forge-poll"}
        with daemon.db.connection_context():
            issued = tokens.issue("ses-0123456789", "acme/api", "w/1", sandbox_id="sbx-0123456789")
            GitToken.update(revoked_at=utcnow() - dt.timedelta(days=TOKEN_RETENTION_DAYS + 1)).execute()
        daemon._purge_tokens_job()
        with daemon.db.connection_context():
            assert GitToken.select().count() == 0, issued
    finally:
        daemon.hypervisor.close()


def test_the_retention_job_deletes_sessions_archived_too_long(tmp_path):
    from appliance.accounts.models import User
    from appliance.repos.models import Repository
    from appliance.sessions.models import Session

    daemon = Daemon(make_config(tmp_path / "s", libvirt_uri="test:///default", archived_session_retention_days=3))
    try:
        with daemon.db.connection_context():
            owner = User.create(username="alice")
            repo = Repository.create(name="acme/api", url="/srv/api.git")
            common = dict(owner=owner, repository=repo, base_branch="main", status="completed")
            old = Session.create(work_branch="w/old", archived_at=utcnow() - dt.timedelta(days=4), **common)
            young = Session.create(work_branch="w/young", archived_at=utcnow() - dt.timedelta(days=1), **common)
        daemon._purge_archived_job()
        with daemon.db.connection_context():
            assert [s.id for s in Session.select()] == [young.id], old.id
    finally:
        daemon.hypervisor.close()


def test_polling_the_forges_can_be_turned_off(tmp_path):
    daemon = Daemon(make_config(tmp_path / "s", libvirt_uri="test:///default", forge_poll_interval=0))
    try:
        daemon.schedule_jobs()
        jobs = {j.id: j for j in daemon.scheduler.get_jobs()}
        assert "forge-poll" not in jobs and "forge-replies" in jobs
        daemon._forge_poll_job()  # still safe to run by hand: nothing to poll
    finally:
        daemon.hypervisor.close()
