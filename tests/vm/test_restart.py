"""kill -9 of the daemon in the middle of a turn, then a restart: nothing lost, nothing stuck."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from appliance.models import Sandbox
from appliance.sessions.models import Session, Turn

from daemon_process import Daemon, api, cleanup, seed, wait_for
from gitserver import GitServer

pytestmark = [pytest.mark.vm, pytest.mark.root]

NET = {"APPLIANCE_BRIDGE": "apltest4", "APPLIANCE_SUBNET": "10.219.0.0/24", "APPLIANCE_TAP_PREFIX": "aplr",
       "APPLIANCE_EGRESS_TABLE": "applrestart"}


def test_kill_9_mid_turn_then_restart_and_continue(hv):
    state = Path(tempfile.mkdtemp(prefix="appliance-restart-", dir="/var/tmp"))
    state.chmod(0o711)
    upstream = GitServer(state / "upstream").start()
    daemon = Daemon(state, port=18000 + os.getpid() % 1000, net=NET)
    try:
        token = seed(state, upstream)
        daemon.start()

        sid = api(daemon.port, token, "POST", "/sessions", {"repository": "acme/app", "prompt": "first",
                                                             "agent": "command", "command": "echo one > one.txt"})["id"]
        first = wait_for(lambda: (s := api(daemon.port, token, "GET", f"/sessions/{sid}"))["status"] == "idle" and s,
                         what="first turn")
        work_branch = first["work_branch"]
        pushed = upstream.head("acme/app", work_branch)
        assert pushed

        api(daemon.port, token, "POST", f"/sessions/{sid}/messages", {"text": "sleep 300"})
        wait_for(lambda: api(daemon.port, token, "GET", f"/sessions/{sid}")["status"] == "running", what="turn 2 running")
        sandbox_id = Session.get_by_id(sid).sandbox_id
        daemon.kill9()

        assert hv.is_running(Sandbox.get_by_id(sandbox_id).domain_name), "the guest outlives the daemon"
        daemon.start()
        s = wait_for(lambda: (s := api(daemon.port, token, "GET", f"/sessions/{sid}"))["status"] == "idle" and s,
                     timeout=60, what="recovery")
        assert "interrupted" in s["status_detail"]
        turns = {t["number"]: t["status"] for t in s["turns"]}
        assert turns == {1: "completed", 2: "interrupted"}
        assert upstream.head("acme/app", work_branch) == pushed, "what was pushed is intact"
        assert Session.get_by_id(sid).sandbox_id == sandbox_id, "the live guest is re-attached"

        api(daemon.port, token, "POST", f"/sessions/{sid}/messages", {"text": "echo three > three.txt"})
        wait_for(lambda: api(daemon.port, token, "GET", f"/sessions/{sid}")["status"] == "idle"
                 and Turn.get((Turn.session == sid) & (Turn.number == 3)).status == "completed", what="turn 3")
        assert upstream.read_file("acme/app", work_branch, "three.txt") == "three\n"
        assert upstream.read_file("acme/app", work_branch, "one.txt") == "one\n"
        assert Session.get_by_id(sid).sandbox_id == sandbox_id
    finally:
        daemon.stop()
        cleanup(state, hv, NET)
        upstream.close()
        shutil.rmtree(state, ignore_errors=True)
