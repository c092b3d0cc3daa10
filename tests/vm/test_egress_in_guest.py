"""The egress policy seen from inside a real guest: allowed, denied, DNS, direct IP, injection.

The appliance side runs in this (root) namespace as the daemon would: bridge, nft, resolver and a
supervised mitmdump. "The internet" is a namespace of our own (tests/integration/netns.py's server:
HTTP/HTTPS for pypi.org, evil.example, api.anthropic.com, … signed by a test CA).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import integration.netns as N
import pytest

from appliance.db import open_database
from appliance.models import Sandbox, SandboxState
from appliance.sandbox.manager import SandboxManager, SandboxRequest
from netpolicy import bridge
from netpolicy.allowlist import Policy
from netpolicy.service import CREDENTIAL_PLACEHOLDER, EgressPolicy

from helpers import make_config, need_root

pytestmark = [pytest.mark.vm, pytest.mark.root]

SECRET = "sk-ant-real-" + os.urandom(8).hex()
UPLINK = "aplvmup0"


@pytest.fixture(scope="module")
def internet():
    need_root()
    # before anything exists: no host route (nor the package mirror) may be under the /32s below,
    # which also makes the cleanup's `ip route del` safe
    N.check_test_routes(sorted(set(N.INTERNET_HOSTS.values())))
    work = Path(tempfile.mkdtemp(prefix="appliance-inet-", dir="/var/tmp"))
    inet = N.Netns(f"aplvm-inet-{os.getpid()}")
    server = None
    try:
        N.sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", inet.name)
        N.sh("ip", "addr", "add", f"{N.UPLINK_HOST}/24", "dev", UPLINK)
        N.sh("ip", "link", "set", UPLINK, "up")
        inet.ip("addr", "add", f"{N.UPLINK_INET}/24", "dev", "eth0")
        for addr in sorted(set(N.INTERNET_HOSTS.values())):
            inet.ip("addr", "add", f"{addr}/32", "dev", "eth0")
        inet.ip("link", "set", "eth0", "up")
        # one /32 per test address: a /24 route would also take the host's package mirror away
        for addr in sorted(set(N.INTERNET_HOSTS.values())):
            N.sh("ip", "route", "add", f"{addr}/32", "via", N.UPLINK_INET)
        names, ips = sorted(N.INTERNET_HOSTS), sorted(set(N.INTERNET_HOSTS.values()))
        ca, cert, key = N.make_test_pki(work / "pki", names, ips)
        (work / "srv").mkdir()
        (work / "srv" / "config.json").write_text(json.dumps({"cert": str(cert), "key": str(key), "dns": {}}))
        server = inet.popen([sys.executable, N.__file__, "serve", str(work / "srv")],
                            stdout=open(work / "server.log", "ab"), stderr=subprocess.STDOUT)
        N.poll(lambda: (work / "srv" / "ready").exists() or server.poll() is not None, what="internet server")
        yield {"ca": ca, "dir": work / "srv"}
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        for addr in sorted(set(N.INTERNET_HOSTS.values())):
            N.sh("ip", "route", "del", f"{addr}/32", check=False)
        N.sh("ip", "link", "del", UPLINK, check=False)
        inet.close()
        shutil.rmtree(work, ignore_errors=True)


def upstream_requests(internet, path: str) -> list[dict]:
    log = internet["dir"] / "requests.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [r for r in rows if r.get("path") == path]


@pytest.fixture(scope="module")
def guest(internet, hv):
    state = Path(tempfile.mkdtemp(prefix="appliance-egressvm-", dir="/var/tmp"))
    state.chmod(0o711)
    creds = state / "credentials.toml"
    creds.write_text(f'["api.anthropic.com"]\nx-api-key = "{SECRET}"\n')
    creds.chmod(0o600)
    cfg = make_config(state, bridge="apltest2", subnet="10.217.0.0/24", tap_prefix="aplv", egress_table="applvm",
                      static_hosts="; ".join(f"{ip} {name}" for name, ip in N.INTERNET_HOSTS.items()),
                      credentials_file=creds, upstream_ca_file=internet["ca"], dns_upstream="127.0.0.1:9")
    open_database(cfg.database_url)
    bridge.ensure_bridge(cfg.bridge, ipaddress.IPv4Interface(f"{cfg.bridge_address}/24"))
    egress = EgressPolicy(cfg)
    egress.start()
    mgr = SandboxManager(cfg, hv, egress=egress)
    try:
        N.poll(lambda: egress.proxy_up, timeout=60, what="proxy up")
        sandbox = mgr.create(SandboxRequest(memory_mb=768, network=Policy.make("limited")))
        with mgr.ssh(sandbox) as ssh:
            ssh.upload(internet["ca"].read_bytes(), "/tmp/internet-ca.pem")
            yield mgr, sandbox, ssh
    finally:
        for s in Sandbox.select().where(Sandbox.state.in_(SandboxState.LIVE)):
            mgr.destroy(s.id)
        egress.stop()
        egress.remove_rules()
        bridge.delete_link(cfg.bridge)
        shutil.rmtree(state, ignore_errors=True)


def sh(ssh, command: str):
    # a login-like environment: the proxy variables come from /etc/environment via pam_env
    return ssh.exec(command, timeout=60)


def test_allowed_host_through_the_explicit_proxy(guest, internet):
    _, _, ssh = guest
    r = sh(ssh, "curl -sS --cacert /tmp/internet-ca.pem https://pypi.org/vm-explicit")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["sni"] == "pypi.org"
    assert upstream_requests(internet, "/vm-explicit")


def test_allowed_host_transparently_when_the_tool_ignores_proxy_variables(guest, internet):
    _, _, ssh = guest
    r = sh(ssh, "curl -sS --noproxy '*' --cacert /tmp/internet-ca.pem https://pypi.org/vm-transparent")
    assert r.exit_code == 0, r.stderr
    assert upstream_requests(internet, "/vm-transparent")


def test_denied_host_gets_an_explanatory_403_and_upstream_sees_nothing(guest, internet):
    _, _, ssh = guest
    r = sh(ssh, "curl -sS -o /dev/stderr -w '%{http_code}' http://evil.example/vm-denied")
    assert r.stdout == b"403"
    assert b"evil.example" in r.stderr and b"limited" in r.stderr
    r = sh(ssh, "curl -sS --cacert /tmp/internet-ca.pem https://evil.example/vm-denied-tls")
    assert r.exit_code != 0
    assert upstream_requests(internet, "/vm-denied") == [] and upstream_requests(internet, "/vm-denied-tls") == []


def test_dns_answers_only_allowed_names_and_direct_ip_is_dropped(guest, internet):
    _, _, ssh = guest
    assert sh(ssh, "getent hosts pypi.org").text.split()[0] == N.INTERNET_HOSTS["pypi.org"]
    assert sh(ssh, "getent hosts evil.example").exit_code != 0
    evil_ip = N.INTERNET_HOSTS["evil.example"]
    r = sh(ssh, f"curl -sS --noproxy '*' --max-time 5 http://{evil_ip}:8443/vm-direct-ip")
    assert r.exit_code != 0
    r = sh(ssh, f"timeout 5 bash -c 'echo > /dev/tcp/{evil_ip}/22' 2>&1")
    assert r.exit_code != 0, "non-HTTP protocols to the internet are dropped"
    assert upstream_requests(internet, "/vm-direct-ip") == []


def test_credential_is_injected_by_the_proxy_and_never_in_the_guest(guest, internet):
    mgr, sandbox, ssh = guest
    r = sh(ssh, f"curl -sS -H 'x-api-key: {CREDENTIAL_PLACEHOLDER}' https://api.anthropic.com/v1/vm-inject")
    assert r.exit_code == 0, r.stderr  # trusted because the appliance CA came with the identity
    seen = upstream_requests(internet, "/v1/vm-inject")
    assert seen and seen[-1]["headers"].get("x-api-key") == SECRET
    assert SECRET.encode() not in r.stdout + r.stderr
    leak = sh(ssh, f"sudo grep -rIl --exclude-dir=proc --exclude-dir=sys '{SECRET}' / 2>/dev/null; "
                   f"sudo cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '{SECRET}'")
    assert leak.text.strip().splitlines() == ["0"], leak.text


def test_egress_decisions_are_audited_per_sandbox(guest):
    from netpolicy import audit

    _, sandbox, _ = guest

    def verdicts():
        return {(r.host, r.verdict) for r in audit.query(sandbox.id, limit=1000)}

    # the proxy child writes its decisions asynchronously
    N.poll(lambda: {("evil.example", "deny"), ("pypi.org", "allow")} <= verdicts(), timeout=30, what="audit rows")
    assert all(r.sandbox_id == sandbox.id for r in audit.query(sandbox.id, limit=1000))
