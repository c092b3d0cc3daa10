"""The guest contract end to end: with another `guest_user` configured, a session's guest logs
that user in, and the agent runs as it, with its HOME and the checkout under its home (the image
has `agent`; the identity service creates the configured user at first boot)."""

from __future__ import annotations

import time

import pytest

from appliance.accounts.models import User
from appliance.environments.models import Environment
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.sessions.models import Event, Session, Status, Turn, TurnStatus
from appliance.sessions.service import NewSession

from appliance_world import appliance_world, remove, state_dir
from daemon_process import wait_for
from gitserver import GitServer

pytestmark = [pytest.mark.vm, pytest.mark.root]


def test_a_session_runs_as_the_configured_guest_user(hv):
    state = state_dir("guestuser")
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/app", {"README.md": "hi\n"})
    try:
        with appliance_world(hv, state, bridge="apltest9", subnet="10.227.0.0/24", tap_prefix="aplu",
                             egress_table="applusr", max_running_sessions=1, idle_guest_timeout=3600.0,
                             memory_mb=768, guest_user="dev", guest_templates="off") as w:
            w.engine.start()
            alice = User.create(username="alice")
            Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                              credential_secret=upstream.token, credential_username="x-access-token")
            Environment.create(owner=alice, name="dev", is_default=True)
            s = w.engine.service.create(alice, NewSession(
                "acme/app", "who am I", agent="command",
                command='echo "who=$(id -un) home=$HOME cwd=$(pwd)" && echo seen > seen.txt'))
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                row = Session.get_by_id(s.id)
                if row.status in (Status.IDLE, *Status.FINAL) and s.id not in w.engine.running_sessions():
                    break
                time.sleep(0.5)
            events = [(e.kind, e.data) for e in Event.select().where(Event.session == s.id)]
            assert Session.get_by_id(s.id).status == Status.IDLE, events[-15:]
            texts = [d.get("text", "") for kind, d in events if kind == "log"]
            assert "who=dev home=/home/dev cwd=/home/dev/work/app" in texts, texts
            assert upstream.read_file("acme/app", Session.get_by_id(s.id).work_branch, "seen.txt") == "seen\n"

            # interrupt an agent that takes no input (signals, as `dev`): the turn ends interrupted,
            # what it wrote is pushed, the guest stays
            guest = Session.get_by_id(s.id).sandbox_id
            w.engine.service.message(alice, s.id, "echo begun > begun.txt && sleep 600")
            wait_for(lambda: Session.get_by_id(s.id).status_detail == "agent", timeout=120,
                     what="the second turn's agent")
            with w.sandboxes.ssh(Sandbox.get_by_id(guest)) as g:
                wait_for(lambda: g.exec("test -f /home/dev/work/app/begun.txt").exit_code == 0, timeout=60,
                         what="the command to start")
            w.engine.service.interrupt(alice, s.id)
            wait_for(lambda: Session.get_by_id(s.id).status == Status.IDLE and s.id not in w.engine.running_sessions(),
                     timeout=120, what="the interrupted turn to end")
            second = Turn.get((Turn.session == s.id) & (Turn.number == 2))
            assert second.status == TurnStatus.INTERRUPTED, (second.status, second.error)
            assert Session.get_by_id(s.id).sandbox_id == guest, "the guest stays"
            assert upstream.read_file("acme/app", Session.get_by_id(s.id).work_branch, "begun.txt") == "begun\n"
    finally:
        upstream.close()
        remove(state)
