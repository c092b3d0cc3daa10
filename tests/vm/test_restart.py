"""kill -9 of the daemon in the middle of a turn, then a restart: nothing lost, nothing stuck."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from appliance.accounts.models import ApiToken, User
from appliance.db import open_database
from appliance.environments.models import Environment
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sessions.models import Session, Turn
from gitserver import GitServer
from helpers import ROOT, shared_image_dir
from netpolicy import bridge
from netpolicy.nft import Nft

pytestmark = [pytest.mark.vm, pytest.mark.root]

NET = {"APPLIANCE_BRIDGE": "apltest4", "APPLIANCE_SUBNET": "10.219.0.0/24", "APPLIANCE_TAP_PREFIX": "aplr",
       "APPLIANCE_EGRESS_TABLE": "applrestart"}


class Daemon:
    def __init__(self, state: Path, port: int):
        self.env = {**os.environ, **NET, "APPLIANCE_CONFIG": str(state / "none.toml"),
                    "APPLIANCE_STATE_DIR": str(state), "APPLIANCE_IMAGE_DIR": str(shared_image_dir()),
                    "APPLIANCE_LISTEN_PORT": str(port), "APPLIANCE_MEMORY_MB": "768"}
        self.port, self.state, self.proc = port, state, None

    def start(self) -> None:
        log = open(self.state / "daemon.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "serve"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except OSError:
                assert self.proc.poll() is None, (self.state / "daemon.log").read_text()[-3000:]
                time.sleep(0.3)
        raise AssertionError("daemon did not come up")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def api(port, token, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait_for(predicate, timeout=300, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_turn_then_restart_and_continue(hv):
    state = Path(tempfile.mkdtemp(prefix="appliance-restart-", dir="/var/tmp"))
    state.chmod(0o711)
    upstream = GitServer(state / "upstream").start()
    daemon = Daemon(state, port=18000 + os.getpid() % 1000)
    try:
        upstream.create_repo("acme/app", {"README.md": "hi\n"})
        open_database(f"sqlite:///{state / 'appliance.db'}")
        user = User.create(username="alice")
        token = ApiToken.issue(user)
        Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                          credential_secret=upstream.token)
        Environment.create(owner=user, name="dev", is_default=True)
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
        mgr_cleanup(state)
        upstream.close()
        shutil.rmtree(state, ignore_errors=True)


def mgr_cleanup(state: Path) -> None:
    """Whatever the daemon left: guests, taps, nft tables, the bridge."""
    for tag in Hypervisor("qemu:///system").tagged_domains():
        sb = Sandbox.get_or_none(Sandbox.id == tag.sandbox_id)
        if sb is not None:
            Hypervisor("qemu:///system").destroy(tag.name)
    for tap in bridge.links_with_prefix(NET["APPLIANCE_TAP_PREFIX"]):
        bridge.delete_link(tap)
    for family in ("inet", "bridge"):
        if Nft().table_exists(family, NET["APPLIANCE_EGRESS_TABLE"]):
            Nft().apply(f"delete table {family} {NET['APPLIANCE_EGRESS_TABLE']}\n")
    bridge.delete_link(NET["APPLIANCE_BRIDGE"])
