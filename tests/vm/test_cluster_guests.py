"""Two worker hosts with real guests: each `appliance worker` is a process with its own state dir,
bridge, subnet, tap prefix, nft table, egress proxy, resolver and git proxy, sharing only
PostgreSQL with control (in this process). A session's guest lives on one host's libvirt under
that host's instance tag, its egress is decided (and audited) by that host's proxy, a follow-up
turn reuses it there; when that host dies (SIGKILL) the session goes on on the other host with a
fresh guest, and the branch holds every turn's work."""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from pathlib import Path

import pytest

from appliance.accounts.models import User
from appliance.models import Sandbox, SandboxState
from appliance.repos.models import Repository
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sessions.models import Session, Turn, TurnStatus
from appliance.sessions.service import NewSession
from netpolicy.audit import EgressEvent

from cluster_world import Cluster
from daemon_process import cleanup
from gitserver import GitServer
from helpers import shared_image_dir

pytestmark = [pytest.mark.vm, pytest.mark.root]

HOSTS = {
    "vm-a": {"bridge": "apltestwa", "subnet": "10.238.0.0/24", "tap_prefix": "aplwa", "egress_table": "applwa"},
    "vm-b": {"bridge": "apltestwb", "subnet": "10.239.0.0/24", "tap_prefix": "aplwb", "egress_table": "applwb"},
}
GUESTS = {"turn_runner": "guests", "memory_mb": 768, "dns_upstream": "127.0.0.1:9", "idle_guest_timeout": 3600,
          "host_stale_after": 10.0, "guest_templates": "off"}


def state_of(root: Path, host: str) -> Path:
    return root / host


def test_a_session_lives_on_one_host_and_moves_when_that_host_dies(pg_url):
    root = Path(tempfile.mkdtemp(prefix="appliance-cluster-", dir="/var/tmp"))
    root.chmod(0o711)
    upstream = GitServer(root / "upstream").start()
    upstream.create_repo("acme/app", {"README.md": "hello\n"})
    hv = Hypervisor("qemu:///system")
    cluster = Cluster(root, pg_url, host_stale_after=10.0)
    try:
        for host, net in HOSTS.items():
            state_of(root, host).mkdir(mode=0o711)
            cluster.add_worker(host, capacity=1, image_dir=str(shared_image_dir()), **net, **GUESTS)
        user = User.create(username="alice")
        Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                          credential_secret=upstream.token, credential_username="x-access-token")
        # the guest asks for a host the policy (limited) does not allow: its worker's proxy decides
        probe = "curl -s -m 20 -o /dev/null https://blocked.example.invalid/ || true"
        session = cluster.service.create(user, NewSession("acme/app", "one", agent="command",
                                                          command=f"{probe}; echo one > one.txt"))
        first = Turn.get((Turn.session == session.id) & (Turn.number == 1))
        assert cluster.wait_turn(first.id).status == TurnStatus.COMPLETED, first.error

        guest = Sandbox.get_by_id(Session.get_by_id(session.id).sandbox_id)
        home, other = guest.host, next(h for h in HOSTS if h != guest.host)
        instance = (state_of(root, home) / "instance-id").read_text().strip()
        tags = {t.sandbox_id: t for t in hv.tagged_domains()}
        assert tags[guest.id].instance == instance, "the guest is on its host's libvirt, under its tag"
        assert ipaddress.ip_address(guest.address) in ipaddress.ip_network(HOSTS[home]["subnet"]), "its host's subnet"
        decided = {e.appliance_host for e in EgressEvent.select().where(EgressEvent.sandbox_id == guest.id)}
        assert decided == {home}, "its egress was decided by its own host's proxy"

        second = cluster.service.message(user, session.id, "echo two > two.txt")
        assert cluster.wait_turn(second.id).status == TurnStatus.COMPLETED, Turn.get_by_id(second.id).error
        assert Session.get_by_id(session.id).sandbox_id == guest.id, "the follow-up reused the guest"
        assert {a.host for a in Turn.get_by_id(second.id).attempts} == {home}

        cluster.workers[home].kill()  # SIGKILL: the host is gone
        third = cluster.service.message(user, session.id, "echo three > three.txt")
        assert cluster.wait_turn(third.id).status == TurnStatus.COMPLETED, Turn.get_by_id(third.id).error
        moved = Sandbox.get_by_id(Session.get_by_id(session.id).sandbox_id)
        assert moved.id != guest.id and moved.host == other and moved.state == SandboxState.RUNNING
        assert Sandbox.get_by_id(guest.id).state == SandboxState.LOST
        branch = Session.get_by_id(session.id).work_branch
        for name in ("one.txt", "two.txt", "three.txt"):
            assert upstream.read_file("acme/app", branch, name).strip() == name.split(".")[0]
    finally:
        cluster.close()
        for host, net in HOSTS.items():
            cleanup(state_of(root, host), hv, {f"APPLIANCE_{k.upper()}": v for k, v in net.items()})
        hv.close()
        upstream.close()
        shutil.rmtree(root, ignore_errors=True)
