"""Parts of the appliance dying under a running daemon (a subprocess with its own state dir), while
a session's turn runs in a real guest:

(a) kill -9 of the daemon's mitmdump child: the supervisor restarts it, the guest's explicit proxy
    requests are decided (and audited) again, the turn completes.
(b) kill -9 of libvirtd, then started again: the guest keeps running and `appliance sandbox reconcile` finds everything
    consistent — no orphan domain, tap or nft element; every session accounted for. Restarting the
    host's libvirtd disturbs anything else using it: on a machine shared with other runs, skip that
    step with APPLIANCE_TEST_SKIP_LIBVIRTD_RESTART=1 (the consistency checks run either way).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from appliance.models import Sandbox, SandboxState
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sessions.models import Session, Turn
from appliance_base import config as config_mod
from netpolicy import bridge
from netpolicy.audit import EgressEvent

from daemon_process import Daemon, api, cleanup, libvirt_ok, restart_libvirtd, seed, wait_for
from gitserver import GitServer

pytestmark = [pytest.mark.vm, pytest.mark.root]

NET = {"APPLIANCE_BRIDGE": "apltest9", "APPLIANCE_SUBNET": "10.225.0.0/24", "APPLIANCE_TAP_PREFIX": "aplk",
       "APPLIANCE_EGRESS_TABLE": "applparts", "APPLIANCE_DNS_UPSTREAM": "127.0.0.1:9"}
RESTART_LIBVIRTD = os.environ.get("APPLIANCE_TEST_SKIP_LIBVIRTD_RESTART") != "1"


def nft_set(family: str, table: str, name: str) -> set[str]:
    out = subprocess.run(["nft", "-j", "list", "set", family, table, name], capture_output=True, text=True,
                         check=True).stdout
    elems = set()
    for item in json.loads(out)["nftables"]:
        for e in item.get("set", {}).get("elem", []):
            elems.add(json.dumps(e["concat"]) if isinstance(e, dict) and "concat" in e else str(e))
    return elems


def gate_open(table: str) -> bool:
    out = subprocess.run(["nft", "list", "chain", "inet", table, "egress_gate"], capture_output=True, text=True,
                         check=True).stdout
    return "drop" not in out


def consistency(daemon: Daemon, hv: Hypervisor, cfg) -> dict:
    """What the host holds of ours against the database's live rows; asserts they agree."""
    instance = (daemon.state / "instance-id").read_text().strip()
    live = list(Sandbox.select().where(Sandbox.state.in_(SandboxState.LIVE)))
    assert all(s.state == SandboxState.RUNNING for s in live), [(s.id, s.state) for s in live]
    domains = {t.name for t in hv.tagged_domains() if t.instance == instance}
    assert domains == {s.domain_name for s in live}, (domains, [s.domain_name for s in live])
    assert all(hv.is_running(s.domain_name) for s in live)
    taps = set(bridge.links_with_prefix(NET["APPLIANCE_TAP_PREFIX"]))
    assert taps == {s.tap for s in live}, (taps, [s.tap for s in live])
    addresses = nft_set("inet", NET["APPLIANCE_EGRESS_TABLE"], "sandboxes")
    assert addresses == {s.address for s in live}, (addresses, [s.address for s in live])
    bindings = nft_set("bridge", NET["APPLIANCE_EGRESS_TABLE"], "bindings")
    assert len(bindings) == len(live) and all(s.tap in str(bindings) and s.address in str(bindings) for s in live), \
        bindings
    return {"live": [s.id for s in live], "domains": domains, "taps": taps}


def test_proxy_kill_and_libvirtd_restart_under_a_running_turn(hv):
    state = Path(tempfile.mkdtemp(prefix="appliance-parts-", dir="/var/tmp"))
    state.chmod(0o711)
    upstream = GitServer(state / "upstream").start()
    daemon = Daemon(state, port=19000 + os.getpid() % 1000, net=NET)
    cfg = config_mod.load(env=daemon.env)
    own_hv = Hypervisor(cfg.libvirt_uri)
    try:
        token = seed(state, upstream)
        daemon.start()
        first_proxy = wait_for(daemon.mitmdump, timeout=60, what="the daemon's mitmdump child")

        sid = api(daemon.port, token, "POST", "/sessions", {"repository": "acme/app", "prompt": "wait",
                                                             "agent": "command", "command": "sleep 60"})["id"]
        wait_for(lambda: api(daemon.port, token, "GET", f"/sessions/{sid}")["status"] == "running",
                 what="the turn running")
        sandbox = Sandbox.get_by_id(Session.get_by_id(sid).sandbox_id)
        proxy = f"http://{cfg.bridge_address}:{cfg.proxy_port}"
        probe = ("curl -s -o /dev/null -w '%{http_code}' --max-time 20 -x " + proxy +
                 " http://evil.example/probe-N")

        def probe_from_guest(n: int) -> str:
            r = daemon.cli("sandbox", "exec", sandbox.id, "--", "sh", "-c", probe.replace("probe-N", f"probe-{n}"), timeout=60)
            return r.stdout.strip()

        assert probe_from_guest(1) == "403", "the proxy refuses a host the policy does not allow"

        # (a) kill -9 the proxy: the supervisor brings it back, decisions and audit resume
        last_row = wait_for(lambda: max([e.id for e in EgressEvent.select()] or [0]), timeout=30,
                            what="the refusal before the kill audited")
        os.kill(first_proxy, signal.SIGKILL)
        second_proxy = wait_for(lambda: (p := daemon.mitmdump()) not in (None, first_proxy) and p,
                                timeout=60, what="a new mitmdump child")
        wait_for(lambda: gate_open(NET["APPLIANCE_EGRESS_TABLE"]), timeout=60, what="the egress gate reopened")
        assert "egress proxy exited" in daemon.log()
        assert wait_for(lambda: probe_from_guest(2) == "403", timeout=60, what="the restarted proxy answering")
        audited = wait_for(lambda: list(EgressEvent.select().where((EgressEvent.id > last_row)
                                                                   & (EgressEvent.source == "proxy"))),
                           timeout=30, what="audit rows from the restarted proxy")
        assert any(e.verdict == "deny" and e.host == "evil.example" and e.sandbox_id == sandbox.id
                   for e in audited), [(e.host, e.verdict, e.sandbox_id, e.path) for e in audited]
        assert daemon.mitmdump() == second_proxy, "one proxy, not restarting in a loop"
        assert api(daemon.port, token, "GET", f"/sessions/{sid}")["status"] == "running"

        # (b) libvirtd killed and restarted under the running guest
        if RESTART_LIBVIRTD:
            restart_libvirtd()
            assert own_hv.is_running(sandbox.domain_name), "the guest outlives libvirtd (the connection reconnects)"
        r = daemon.cli("sandbox", "reconcile")
        assert r.returncode == 0, r.stderr
        assert all(line.endswith(": none") for line in r.stdout.strip().splitlines()), r.stdout
        s = Session.get_by_id(sid)
        assert s.status == "running" and s.sandbox_id == sandbox.id
        assert Sandbox.get_by_id(sandbox.id).state == SandboxState.RUNNING
        consistency(daemon, own_hv, cfg)

        # the turn completes through all of it, in the same guest
        wait_for(lambda: api(daemon.port, token, "GET", f"/sessions/{sid}")["status"] == "idle", timeout=180,
                 what="the turn to finish")
        assert Turn.get((Turn.session == sid) & (Turn.number == 1)).status == "completed"
        r = daemon.cli("sandbox", "reconcile")
        assert r.returncode == 0 and all(line.endswith(": none") for line in r.stdout.strip().splitlines()), r.stdout
        assert Session.get_by_id(sid).sandbox_id == sandbox.id
        assert consistency(daemon, own_hv, cfg)["live"] == [sandbox.id]
    finally:
        daemon.stop()
        if not libvirt_ok() and RESTART_LIBVIRTD:
            subprocess.run(["libvirtd", "-d"], check=False)
            wait_for(libvirt_ok, timeout=60, what="libvirtd back")
        own_hv.close()
        cleanup(state, Hypervisor(cfg.libvirt_uri), NET)
        upstream.close()
        shutil.rmtree(state, ignore_errors=True)
