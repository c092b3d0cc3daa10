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
                                                                "forge-replies", "forge-poll"}
        with daemon.db.connection_context():
            issued = tokens.issue("ses-0123456789", "acme/api", "w/1", sandbox_id="sbx-0123456789")
            GitToken.update(revoked_at=utcnow() - dt.timedelta(days=TOKEN_RETENTION_DAYS + 1)).execute()
        daemon._purge_tokens_job()
        with daemon.db.connection_context():
            assert GitToken.select().count() == 0, issued
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
