"""Root inside a real guest tries every way out it can think of, at every network level.

Two guests on the appliance's bridge: the attacker (its policy switched level by level, as an
admin editing the environment would) and a victim. The attacker runs as root (sudo) and tries:
the other guest, the host's own addresses and ports (another address of the host and a port on the
bridge address that is not a service port), IPv6, raw internet addresses, DNS straight to the
internet and over TCP, borrowing the victim's address and MAC, claiming the gateway's address, and
flushing its own firewall first. Nothing gets through at `none`/`limited`/`custom`; at `full` the
internet really works (forwarded by the host) but never the host or the other guest.

"The internet" is a namespace of our own (tests/integration/netns.py's server); the host's extra
address sits on the uplink made here — no traffic leaves this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import integration.netns as N
import pytest

from appliance.models import Sandbox, SandboxState
from appliance.sandbox.manager import SandboxManager, SandboxRequest
from netpolicy import bridge
from netpolicy.allowlist import Policy
from netpolicy.service import EgressPolicy

from appliance_world import state_dir
from helpers import make_config

pytestmark = [pytest.mark.vm, pytest.mark.root]

UPLINK = "aplvmup3"
HOST_EXTRA = "198.18.77.1"  # an address of "the host" that is not the bridge's (on our uplink)
HOST_PORT = 2222  # a TCP listener on every host address: never a service port for guests
INTERNET_IP = N.INTERNET_HOSTS["pypi.org"]
BRIDGE, SUBNET, BRIDGE_IP = "apltest7", "10.225.0.0/24", "10.225.0.1"
BRIDGE_IP6, HOST_PORT6 = "fe80::a7e:1", 2223  # the host on the bridge over IPv6 (link-local), v6-only listener


def dns_query(name: str, qid: int = 0x4321) -> str:
    """A DNS A query for `name`, as hex (for a one-line python3 in the guest)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return (qid.to_bytes(2, "big") + bytes.fromhex("01000001000000000000") + labels + bytes.fromhex("00010001")).hex()


def _listen(address: str, port: int, family=socket.AF_INET) -> socket.socket:
    """A TCP listener that answers 'host-reached' to whoever connects (the attack's prize)."""
    srv = socket.create_server((address, port), family=family)  # AF_INET6: v6 only

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"host-reached\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def world(hv):
    N.check_test_routes([INTERNET_IP, HOST_EXTRA])
    work = Path(tempfile.mkdtemp(prefix="appliance-escape-", dir="/var/tmp"))
    inet = N.Netns(f"aplvm-esc-{os.getpid()}")
    state = state_dir("escape")
    server = egress = None
    listeners = []
    forwarding = Path("/proc/sys/net/ipv4/ip_forward")
    was_forwarding = forwarding.read_text().strip()
    try:
        forwarding.write_text("1\n")  # as scripts/install sets it: level full is routed by the host
        N.sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", inet.name)
        N.sh("ip", "addr", "add", "198.51.100.9/30", "dev", UPLINK)
        N.sh("ip", "link", "set", UPLINK, "up")
        inet.ip("addr", "add", "198.51.100.10/30", "dev", "eth0")
        inet.ip("addr", "add", f"{INTERNET_IP}/32", "dev", "eth0")
        inet.ip("link", "set", "eth0", "up")
        inet.ip("route", "add", "default", "via", "198.51.100.9")  # answers go back through the host
        N.sh("ip", "route", "add", f"{INTERNET_IP}/32", "via", "198.51.100.10")
        N.sh("ip", "addr", "add", f"{HOST_EXTRA}/32", "dev", UPLINK)  # one more address of the host's
        ca, cert, key = N.make_test_pki(work / "pki", ["pypi.org"], [INTERNET_IP])
        (work / "srv").mkdir()
        (work / "srv" / "config.json").write_text(json.dumps({"cert": str(cert), "key": str(key), "dns": {}}))
        server = inet.popen([sys.executable, N.__file__, "serve", str(work / "srv")],
                            stdout=open(work / "server.log", "ab"), stderr=subprocess.STDOUT)
        N.poll(lambda: (work / "srv" / "ready").exists() or server.poll() is not None, what="internet server")

        cfg = make_config(state, bridge=BRIDGE, subnet=SUBNET, tap_prefix="aple", egress_table="applescape",
                          static_hosts=f"{INTERNET_IP} pypi.org", upstream_ca_file=ca, dns_upstream="127.0.0.1:9")
        from appliance.db import open_database

        open_database(cfg.database_url)
        egress = EgressPolicy(cfg)
        egress.ensure_bridge()
        egress.start()
        N.poll(lambda: egress.proxy_up, timeout=60, what="proxy up")
        N.sh("ip", "-6", "addr", "add", f"{BRIDGE_IP6}/64", "dev", BRIDGE)
        listeners = [_listen(HOST_EXTRA, HOST_PORT), _listen(BRIDGE_IP, HOST_PORT),
                     _listen("::", HOST_PORT6, socket.AF_INET6)]
        mgr = SandboxManager(cfg, hv, egress=egress)
        attacker = mgr.create(SandboxRequest(memory_mb=768, network=Policy.make("limited")))
        victim = mgr.create(SandboxRequest(memory_mb=768, network=Policy.make("limited")))
        with mgr.ssh(attacker) as a, mgr.ssh(victim) as v:
            yield {"mgr": mgr, "egress": egress, "attacker": attacker, "victim": victim, "a": a, "v": v,
                   "inet": work / "srv"}
    finally:
        for srv in listeners:
            srv.close()
        if egress is not None:
            mgr = SandboxManager(egress.config, hv, egress=egress)
            for s in Sandbox.select().where(Sandbox.state.in_(SandboxState.LIVE)):
                mgr.destroy(s.id)
            egress.stop()
            egress.remove_rules()
            bridge.delete_link(BRIDGE)
        if server is not None:
            server.terminate()
            server.wait(10)
        N.sh("ip", "route", "del", f"{INTERNET_IP}/32", check=False)
        N.sh("ip", "link", "del", UPLINK, check=False)
        inet.close()
        forwarding.write_text(was_forwarding + "\n")
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


def set_level(w, level: str) -> None:
    s = Sandbox.get_by_id(w["attacker"].id)
    policy = Policy.make(level, ["pypi.org"] if level == "custom" else [])
    w["egress"].attach(s.id, s.address, s.tap, policy, s.session_id, s.mac)


def reached(guest, command: str) -> bool:
    """Did `command` (run as root, 6 s at most) get an answer?"""
    r = guest.exec(f"sudo timeout 6 sh -c {json.dumps(command)}", timeout=30)
    return r.exit_code == 0 and bool(r.stdout.strip())


def tcp(address: str, port: int) -> str:
    return f"exec 3<>/dev/tcp/{address}/{port} && head -c 64 <&3"


ATTACKS = {
    "the other guest's sshd": lambda w: tcp(w["victim"].address, 22),
    "a host address that is not the bridge's": lambda w: tcp(HOST_EXTRA, HOST_PORT),
    "a port on the bridge address that is not a service": lambda w: tcp(BRIDGE_IP, HOST_PORT),
    "the host through the proxy": lambda w: f"curl -sSf -x http://{BRIDGE_IP}:3128 http://{HOST_EXTRA}:{HOST_PORT}/",
    "the host over IPv6": lambda w: f"python3 -c \"import socket;s=socket.create_connection(('{BRIDGE_IP6}%eth0',"
                                    f"{HOST_PORT6}),4);print(s.recv(64))\"",
}


@pytest.mark.parametrize("level", ["none", "limited", "custom", "full"])
def test_root_in_the_guest_reaches_neither_the_host_nor_the_other_guest(world, level):
    set_level(world, level)
    a = world["a"]
    a.exec("sudo nft flush ruleset 2>/dev/null; sudo iptables -F 2>/dev/null; true")  # its own firewall: no help
    got_through = [name for name, attack in ATTACKS.items() if reached(a, attack(world))]
    assert got_through == [], f"at {level}: {got_through}"


@pytest.mark.parametrize("level", ["none", "limited", "custom"])
def test_below_full_raw_addresses_and_dns_stay_inside(world, level):
    set_level(world, level)
    a = world["a"]
    attacks = {
        "HTTP to a raw address": f"curl -sSf --noproxy '*' http://{INTERNET_IP}/raw",
        "raw TCP to the internet": f"python3 -c \"import socket;socket.create_connection(('{INTERNET_IP}',8443),4);"
                                   f"print('connected')\"",
        "a name the policy does not allow": "getent hosts evil.example",
        "DNS over TCP for a name the policy does not allow":
            f"python3 -c \"import socket;s=socket.create_connection(('{BRIDGE_IP}',53),3);"
            f"q=bytes.fromhex('{dns_query('evil.example')}');"
            f"s.sendall(len(q).to_bytes(2,'big')+q);r=s.recv(512);print(r) if r[5]&15==0 and r[9] else None\"",
    }
    got_through = [name for name, cmd in attacks.items() if reached(a, cmd)]
    # DNS straight to the internet's server (the server logs every query it receives)
    send_dns(a, f"escape-{level}.test")
    assert got_through == [], f"at {level}: {got_through}"
    assert f"escape-{level}.test" not in internet_log(world), f"at {level}: DNS reached the internet"
    assert "/raw" not in internet_log(world)


def send_dns(guest, name: str) -> None:
    """A DNS query for `name` straight to the internet's server over UDP (no answer awaited)."""
    guest.exec(f"sudo python3 -c \"import socket;socket.socket(2,2).sendto(bytes.fromhex('{dns_query(name)}'),"
               f"('{INTERNET_IP}',53))\"", timeout=30)


def internet_log(world) -> str:
    """What the internet's server logged (HTTP requests and DNS queries it received)."""
    return "".join(p.read_text() for p in world["inet"].glob("*.jsonl"))


def test_at_full_the_internet_really_works(world):
    set_level(world, "full")
    a = world["a"]
    assert reached(a, f"curl -sSf --noproxy '*' http://{INTERNET_IP}/full-direct"), "a raw address"
    assert reached(a, "curl -sSf http://pypi.org/full-proxy"), "through the proxy"
    # not HTTP: forwarded (and masqueraded) by the host — a TCP connection to the server's TLS port
    # (below full the same connection is refused: test_below_full_raw_addresses_and_dns_stay_inside)
    assert reached(a, f"python3 -c \"import socket;socket.create_connection(('{INTERNET_IP}',8443),4);"
                      f"print('connected')\""), "forwarded by the host"
    send_dns(a, "escape-full.test")
    N.poll(lambda: "escape-full.test" in internet_log(world), timeout=10, what="UDP forwarded at full")


def test_borrowing_the_victims_address_and_mac_or_the_gateways_takes_nothing(world):
    set_level(world, "limited")
    a, v, victim = world["a"], world["v"], world["victim"]
    mac = a.exec("cat /sys/class/net/eth0/address").text.strip()
    victim_mac = v.exec("cat /sys/class/net/eth0/address").text.strip()
    # the victim's address as a second address, used as the source: dropped at the bridge
    a.exec(f"sudo ip addr add {victim.address}/32 dev eth0")
    assert not reached(a, f"curl -sSf --interface {victim.address} -x http://{BRIDGE_IP}:3128 http://pypi.org/x")
    a.exec(f"sudo ip addr del {victim.address}/32 dev eth0")
    # the victim's MAC and a gratuitous ARP claiming the gateway, for a few seconds, then back
    garp = ("import socket;s=socket.socket(17,3);s.bind(('eth0',0));"
            f"m=bytes.fromhex('{victim_mac.replace(':', '')}');g=socket.inet_aton('{BRIDGE_IP}');"
            "f=b'\\xff'*6+m+b'\\x08\\x06'+bytes.fromhex('0001080006040002')+m+g+b'\\xff'*6+g;"
            "[s.send(f) for _ in range(3)]")
    a.exec(f"sudo sh -c 'ip link set eth0 address {victim_mac}; python3 -c \"{garp}\"; sleep 6; "
           f"ip link set eth0 address {mac}' </dev/null >/dev/null 2>&1 &", timeout=10)
    # meanwhile the host still reaches the victim (its SSH), and the victim still reaches its services
    assert v.exec("hostname", timeout=30).text.strip() == victim.id
    assert v.exec("getent hosts pypi.org", timeout=30).text.split()[0] == INTERNET_IP
    N.poll(lambda: a.exec("cat /sys/class/net/eth0/address", timeout=30).text.strip() == mac, timeout=60,
           what="the attacker's own MAC back")
    assert v.exec("hostname", timeout=30).exit_code == 0
