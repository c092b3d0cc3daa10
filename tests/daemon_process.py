"""The appliance daemon as a child process, for tests that kill and restart it (tests/vm)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from appliance.sandbox.hypervisor import Hypervisor
from netpolicy import bridge
from netpolicy.nft import Nft

from helpers import ROOT, shared_image_dir


class Daemon:
    """`appliance serve` as a child process with its own state dir, port and network settings
    (`net`: APPLIANCE_* variables naming a bridge, subnet, tap prefix and nft table of the test's)."""

    def __init__(self, state: Path, port: int, net: dict[str, str]):
        self.net = net
        self.env = {**os.environ, **net, "APPLIANCE_CONFIG": str(state / "none.toml"),
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
                assert self.proc.poll() is None, self.log()
                time.sleep(0.3)
        raise AssertionError("daemon did not come up")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return (self.state / "daemon.log").read_text(errors="replace")[-4000:]

    def cli(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance.cli.main", *argv], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def children(self) -> dict[int, str]:
        """The daemon's child processes: pid → command line."""
        out = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                pids = (task / "children").read_text().split()
            except OSError:
                continue
            for pid in map(int, pids):
                try:
                    out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    pass
        return out

    def mitmdump(self) -> int | None:
        pids = [pid for pid, cmd in self.children().items() if "mitmdump" in cmd]
        assert len(pids) <= 1, pids
        return pids[0] if pids else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def api(port, token, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait_for(predicate, timeout=300, what="condition", interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def seed(state: Path, upstream) -> str:
    """The daemon's database with one user (its API token returned), the upstream repository
    `acme/app` with a first commit, and a default environment."""
    from appliance.accounts.models import ApiToken, User
    from appliance.db import open_database
    from appliance.environments.models import Environment
    from appliance.repos.models import Repository

    upstream.create_repo("acme/app", {"README.md": "hi\n"})
    open_database(f"sqlite:///{state / 'appliance.db'}")
    user = User.create(username="alice")
    token = ApiToken.issue(user)
    Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                      credential_secret=upstream.token)
    Environment.create(owner=user, name="dev", is_default=True)
    return token


def cleanup(state: Path, hv: Hypervisor, net: dict[str, str]) -> None:
    """Whatever a daemon of `state` left: its guests, our taps, nft tables and bridge."""
    instance_file = state / "instance-id"
    instance = instance_file.read_text().strip() if instance_file.exists() else None
    prefix = net["APPLIANCE_TAP_PREFIX"]
    for tag in hv.tagged_domains():
        # ours: this state dir's instance, or a tap name only this test's settings produce
        if tag.instance == instance or tag.sandbox_id.startswith("sb-") and _tap_of(hv, tag.name, prefix):
            hv.destroy(tag.name)
    for tap in bridge.links_with_prefix(prefix):
        bridge.delete_link(tap)
    for family in ("inet", "bridge"):
        if Nft().table_exists(family, net["APPLIANCE_EGRESS_TABLE"]):
            Nft().apply(f"delete table {family} {net['APPLIANCE_EGRESS_TABLE']}\n")
    bridge.delete_link(net["APPLIANCE_BRIDGE"])


def _tap_of(hv: Hypervisor, domain: str, prefix: str) -> bool:
    import xml.etree.ElementTree as ET

    try:
        xml = hv.conn.lookupByName(domain).XMLDesc(0)
    except Exception:
        return False
    return any((t.get("dev") or "").startswith(prefix) for t in ET.fromstring(xml).iter("target")
               if t.get("dev"))


def libvirt_ok() -> bool:
    return subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0


def restart_libvirtd() -> None:
    """kill -9 the host's libvirtd by its pid (not by name) and start it again the way it runs here."""
    pid = int(Path("/run/libvirtd.pid").read_text().split()[0])
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "libvirtd"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=60, what="libvirtd to stop")
    subprocess.run(["libvirtd", "-d"], check=True)
    wait_for(libvirt_ok, timeout=60, what="libvirtd back")
