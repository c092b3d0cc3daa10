"""Where control sends a session's next turn: to the host holding its guest while that host is
alive and not draining, else to `any` (on the shared PostgreSQL; no workers needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from appliance.accounts.models import User
from appliance.cluster.control import ClusterControl
from appliance.cluster.jobs import ANY_QUEUE
from appliance.cluster.models import Host
from appliance.db import open_database, utcnow
from appliance.models import Sandbox, SandboxState
from appliance.repos.models import Repository
from appliance.sessions.models import Session, Turn
from appliance.sessions.service import NewSession, SessionService

from cluster_world import CLUSTER_SETTINGS
from helpers import make_config


@pytest.fixture
def control(tmp_path, pg_url):
    cfg = make_config(tmp_path / "control", database_url=pg_url, **CLUSTER_SETTINGS)
    open_database(pg_url)
    c = ClusterControl(cfg)
    yield c
    c.close()


def session_with_guest_on(control, host: str, **host_fields) -> str:
    Host.create(id=host, capacity=2, **host_fields)
    user = User.create(username="dana")
    Repository.create(name="acme/app", url="/srv/app.git")
    session = SessionService(control.config).create(user, NewSession("acme/app", "x", agent="command", command="true"))
    guest = Sandbox.create(profile="p", image_dir="", vcpus=1, memory_mb=1, disk_gb=1, state=SandboxState.RUNNING,
                           purpose="session", session_id=session.id, host=host)
    Session.update(sandbox_id=guest.id).where(Session.id == session.id).execute()
    return session.id


def queued_job_queue(control, sid: str) -> str:
    control.admit()
    job_id = Turn.get(Turn.session == sid).job_id
    return control.app.job_manager.list_jobs(id=job_id)[0].queue


def test_a_turn_follows_its_guest_to_a_live_host(control):
    sid = session_with_guest_on(control, "h16r1")
    assert queued_job_queue(control, sid) == "host:h16r1"


def test_a_draining_host_gets_no_new_turns(control):
    sid = session_with_guest_on(control, "h16r2", draining=True)
    assert queued_job_queue(control, sid) == ANY_QUEUE


def test_a_silent_host_gets_no_new_turns_and_its_queued_ones_move_to_any(control):
    sid = session_with_guest_on(control, "h16r3")
    assert queued_job_queue(control, sid) == "host:h16r3"
    Host.update(heartbeat=utcnow() - timedelta(seconds=60)).where(Host.id == "h16r3").execute()
    first_job = Turn.get(Turn.session == sid).job_id
    assert control.reroute_lost_hosts() == [Turn.get(Turn.session == sid).id]
    turn = Turn.get(Turn.session == sid)
    assert turn.job_id != first_job
    assert control.app.job_manager.list_jobs(id=first_job)[0].status == "cancelled"
    assert control.app.job_manager.list_jobs(id=turn.job_id)[0].queue == ANY_QUEUE
    assert Session.get_by_id(sid).sandbox_id is None  # its guest went with the host: the next turn starts fresh


def test_a_queued_turn_whose_job_is_gone_is_admitted_again(control):
    sid = session_with_guest_on(control, "h16r4")
    control.admit()
    lost_job = Turn.get(Turn.session == sid).job_id
    assert control.sweep() == []  # its job waits: nothing to do
    control.app.job_manager.cancel_job_by_id(lost_job, delete_job=True)  # e.g. an admin cleaned the queue
    assert control.sweep() == [Turn.get(Turn.session == sid).id]
    control.admit()
    again = Turn.get(Turn.session == sid).job_id
    assert again not in (None, lost_job)
    assert control.app.job_manager.list_jobs(id=again)[0].status == "todo"
