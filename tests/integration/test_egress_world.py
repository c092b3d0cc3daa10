"""Egress policy end to end: real nft, real mitmdump, real resolver, in network namespaces.

One world per module (see netns.py): the appliance host with its bridge, "the internet" with
HTTP/HTTPS servers answering as pypi.org, evil.example, ..., and one fake sandbox per policy.
Each test states the attack first, then checks the guard held — including that the upstream
never saw the refused request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import dns.exception
import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and nftables"),
]

from conftest import make_config  # noqa: E402 - tests/conftest.py

from appliance.db import open_database  # noqa: E402
from netpolicy import audit, bridge  # noqa: E402
from netpolicy.allowlist import Policy  # noqa: E402
from netpolicy.nft import Nft  # noqa: E402
from netpolicy.service import CREDENTIAL_PLACEHOLDER, EgressPolicy  # noqa: E402

import netns as N  # noqa: E402 - tests/integration/netns.py

SECRET = "sk-ant-real-secret-" + os.urandom(8).hex()

POLICIES = {
    "limited": Policy.make("limited"),
    "none": Policy.make("none"),
    "custom": Policy.make("custom", ["*.example.com"]),
    "full": Policy.make("full"),
    "readonly": Policy.make("limited", methods="GET,HEAD,OPTIONS"),
}


class Env:
    def __init__(self, world, svc, cfg, sandboxes):
        self.world, self.svc, self.cfg, self.sb = world, svc, cfg, sandboxes
        self.gw = world.gateway
        self.proxy = (world.gateway, cfg.proxy_port)
        self.ca = str(world.ca)  # the internet's test CA
        self.appliance_ca = str(svc.confdir / "mitmproxy-ca-cert.pem")

    def host(self, fn, *args, **kw):
        return self.world.host.run(fn, *args, **kw)

    def seen(self, path: str) -> list[dict]:
        """Requests for `path` that reached the internet."""
        return [r for r in self.world.requests() if r["path"] == path]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("egress")
    world = N.World(tmp)
    svc = None
    try:
        creds = tmp / "credentials.toml"
        creds.write_text(f'["api.anthropic.com"]\nx-api-key = "{SECRET}"\n')
        creds.chmod(0o600)
        cfg = make_config(
            tmp / "state",
            bridge=world.bridge,
            subnet=str(world.network),
            tap_prefix=world.tap_prefix,
            egress_table=world.table,
            dns_upstream=f"{N.UPLINK_INET}:53",
            static_hosts=world.static_hosts(),
            credentials_file=creds,
            upstream_ca_file=world.ca,
            proxy_restart_delay=2.0,
        )
        open_database(cfg.database_url)
        svc = EgressPolicy(cfg)
        world.host.run(svc.start)
        sandboxes = {}
        for name, policy in POLICIES.items():
            sb = world.add_sandbox()
            world.host.run(bridge.bind_port, sb.tap, world.bridge, sb.mac)  # as create_tap does for a tap
            world.host.run(svc.attach, f"sb-{name}", sb.address, sb.tap, policy, session_id=f"sess-{name}", mac=sb.mac)
            sandboxes[name] = sb
        yield Env(world, svc, cfg, sandboxes)
    finally:
        if svc is not None:
            world.host.run(svc.stop)
            world.host.run(svc.remove_rules)
        world.close()


# --- allowed traffic, four ways -------------------------------------------------------------------


def test_allowed_host_through_explicit_proxy_http_and_https(env):
    sb = env.sb["limited"]
    r = sb.run(N.http_via_proxy, env.proxy, "http://pypi.org/explicit-http")
    assert r.status == 200 and r.json()["host"] == "pypi.org"
    r = sb.run(N.https_via_proxy, env.proxy, "pypi.org", env.ca, "/explicit-https")
    assert r.status == 200 and r.json()["sni"] == "pypi.org"
    # Passthrough: the sandbox verified the internet's own certificate (it trusts only the test CA).
    assert env.seen("/explicit-https")[0]["server_ip"] == N.INTERNET_HOSTS["pypi.org"]


def test_allowed_host_transparently_for_tools_that_ignore_proxy_variables(env):
    sb = env.sb["limited"]
    rcode, addrs = sb.run(N.dns_query, env.gw, "pypi.org")
    assert (rcode, addrs) == ("NOERROR", [N.INTERNET_HOSTS["pypi.org"]])
    r = sb.run(N.http_direct, addrs[0], 80, "pypi.org", "/transparent-http")
    assert r.status == 200
    r = sb.run(N.https_direct, addrs[0], 443, "pypi.org", env.ca, "/transparent-https")
    assert r.status == 200 and r.json()["sni"] == "pypi.org"


def test_transparent_connection_goes_to_the_name_not_the_dialled_address(env):
    # Attack: dial evil's address but claim to be pypi.org, hoping the proxy forwards to the
    # address dialled. The proxy connects to pypi.org's own address instead.
    sb = env.sb["limited"]
    r = sb.run(N.https_direct, N.INTERNET_HOSTS["evil.example"], 443, "pypi.org", env.ca, "/dialled-evil")
    assert r.status == 200
    assert [x["server_ip"] for x in env.seen("/dialled-evil")] == [N.INTERNET_HOSTS["pypi.org"]]


# --- denied traffic -------------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["explicit-http", "connect", "transparent-http", "transparent-https"])
def test_denied_host_gets_explanatory_403_and_upstream_sees_nothing(env, way):
    sb = env.sb["limited"]
    path = f"/denied-{way}"
    evil = N.INTERNET_HOSTS["evil.example"]
    if way == "explicit-http":
        r = sb.run(N.http_via_proxy, env.proxy, f"http://evil.example{path}")
    elif way == "connect":
        r = sb.run(N.https_via_proxy, env.proxy, "evil.example", env.ca, path)
    elif way == "transparent-http":
        r = sb.run(N.http_direct, evil, 80, "evil.example", path)
    else:  # refused TLS is intercepted so the guest (trusting the appliance CA) can read why
        r = sb.run(N.https_direct, evil, 443, "evil.example", env.appliance_ca, path)
    assert r.status == 403
    assert r.headers.get("x-appliance-egress") == "denied"
    assert "evil.example" in r.text and "policy: limited" in r.text and "sb-limited" in r.text
    assert env.seen(path) == []


def test_level_none_allows_nothing(env):
    sb = env.sb["none"]
    r = sb.run(N.http_via_proxy, env.proxy, "http://pypi.org/none-level")
    assert r.status == 403 and "level none" in r.text
    assert sb.run(N.dns_query, env.gw, "pypi.org")[0] == "REFUSED"
    assert env.seen("/none-level") == []


def test_wildcard_matching_is_exact(env):
    sb = env.sb["custom"]  # custom: *.example.com only
    assert sb.run(N.http_via_proxy, env.proxy, "http://a.example.com/wild-ok").status == 200
    for host in ("example.com.evil.net", "example.com", "pypi.org"):
        r = sb.run(N.http_via_proxy, env.proxy, f"http://{host}/wild-no")
        assert r.status == 403, host
        assert sb.run(N.dns_query, env.gw, host)[0] == "REFUSED", host
    assert [x["host"] for x in env.seen("/wild-ok")] == ["a.example.com"]
    assert env.seen("/wild-no") == []


def test_bare_ip_refused_unless_full(env):
    ip = N.INTERNET_HOSTS["pypi.org"]
    r = env.sb["limited"].run(N.https_via_proxy, env.proxy, ip, env.ca, "/bare-ip", sni=None, host_header=ip)
    assert r.status == 403 and "bare IP address" in r.text
    r = env.sb["limited"].run(N.http_direct, ip, 80, ip, "/bare-ip")
    assert r.status == 403 and "bare IP address" in r.text
    assert env.seen("/bare-ip") == []
    r = env.sb["full"].run(N.https_via_proxy, env.proxy, ip, env.ca, "/bare-ip-full", sni=None, host_header=ip)
    assert r.status == 200


def test_sni_different_from_connect_host_is_refused(env):
    # Attack: domain fronting — CONNECT to an allowed host, then ask TLS for another one.
    sb = env.sb["limited"]
    r = sb.run(N.https_via_proxy, env.proxy, "pypi.org", env.appliance_ca, "/fronted", sni="evil.example")
    assert r.status == 403 and "does not match the CONNECT host" in r.text
    # A client that does not trust the appliance CA just fails the handshake.
    with pytest.raises(OSError):
        sb.run(N.https_via_proxy, env.proxy, "pypi.org", env.ca, "/fronted", sni="evil.example")
    # Same idea one layer up: allowed request target, other Host header.
    r = sb.run(N.http_via_proxy, env.proxy, "http://pypi.org/fronted", host="evil.example")
    assert r.status == 403
    assert env.seen("/fronted") == []


def test_dns_for_denied_name_is_refused_and_never_forwarded(env):
    sb = env.sb["custom"]
    assert sb.run(N.dns_query, env.gw, "tunnel-data-1234.evil.example")[0] == "REFUSED"
    assert sb.run(N.dns_query, env.gw, "tunnel-data-1234.evil.example", tcp=True)[0] == "REFUSED"
    # An allowed name outside the static map is forwarded upstream (and cached).
    assert sb.run(N.dns_query, env.gw, "b.example.com") == ("NOERROR", [N.INTERNET_DNS["b.example.com"]])
    assert sb.run(N.dns_query, env.gw, "b.example.com") == ("NOERROR", [N.INTERNET_DNS["b.example.com"]])
    log = env.world.dns_log()
    assert log.count("b.example.com") == 1
    assert not any("evil" in name for name in log)


def test_direct_connection_to_the_internet_is_dropped(env):
    ip = N.INTERNET_HOSTS["pypi.org"]
    for name in ("limited", "custom", "none"):
        assert env.sb[name].run(N.tcp_refused, ip, 8443) is not None, name
    # The same connection works at level full: the server is there, the rules are what stop it.
    assert env.sb["full"].run(N.tcp_refused, ip, 8443) is None


def test_private_link_local_and_metadata_unreachable_even_at_full(env):
    # The host can reach a metadata service and has services on loopback; a full sandbox must not.
    sb = env.sb["full"]
    assert env.host(N.http_direct, N.METADATA, 80, N.METADATA, "/host-can").status == 200
    assert sb.run(N.tcp_refused, N.METADATA, 8443) is not None
    assert sb.run(N.tcp_refused, N.UPLINK_HOST, 22) is not None
    loopback = env.world.host.submit(_accept_once, "127.0.0.1", 80, 3.0)
    # Through the proxy: by address, and by names rebound onto the metadata address or loopback.
    r = sb.run(N.http_direct, N.METADATA, 80, N.METADATA, "/latest/meta-data/")
    assert r.status == 502 and "blocked" in r.text
    r = sb.run(N.http_via_proxy, env.proxy, "http://metadata.example.com/latest/meta-data/")
    assert r.status == 502
    r = sb.run(N.http_via_proxy, env.proxy, "http://loopback.example.com/")
    assert r.status == 502
    assert env.seen("/latest/meta-data/") == []
    env.host(N.tcp_refused, "127.0.0.1", 80)
    assert loopback.result(5) == "127.0.0.1"  # only our own release connection ever arrived


def _listen(address: str, port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(8)
    return s


def _first_bytes(listener: socket.socket, timeout: float = 10.0) -> bytes | None:
    """What the first connection a listener accepted sent first (None: nobody came)."""
    with listener:
        listener.settimeout(timeout)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return None
        with conn:
            conn.settimeout(timeout)
            try:
                return conn.recv(200)
            except OSError:
                return b""


def _send_once(address: str, port: int, data: bytes) -> None:
    with socket.create_connection((address, port), timeout=5) as s:
        s.sendall(data)


def _tunnel_send(proxy, target: str, data: bytes) -> int:
    s, refused = N.connect_tunnel(proxy, target)
    with s:
        if refused is not None:
            return refused.status
        s.sendall(data)
        try:
            s.recv(100)
        except OSError:
            pass
        return 200


def test_hole4_full_never_reaches_the_host_itself_through_the_proxy(env):
    # Attack (issue 11, hole 4): at level full, ask the proxy for the host's own public address
    # (its sshd, console, a database on 0.0.0.0), explicitly and through the transparent redirect;
    # then for an address the host got only after the proxy started.
    sb = env.sb["full"]
    late = "198.51.100.77"
    env.world.host.ip("addr", "add", f"{late}/32", "dev", "uplink")
    try:
        targets = [(N.UPLINK_HOST, 2222), (N.UPLINK_HOST, 80), (late, 2223)]
        listeners = [env.host(_listen, addr, port) for addr, port in targets]
        sb.run(_tunnel_send, env.proxy, f"{N.UPLINK_HOST}:2222", b"ATTACK explicit\n")
        try:  # the listener never answers: a reply or a refusal means it was never reached
            r = sb.run(N.http_direct, N.UPLINK_HOST, 80, N.UPLINK_HOST, "/host-console", timeout=3.0)
            assert r.status == 502 and "host's own address" in r.text, r
        except ConnectionRefusedError:
            pass  # nft: the host's own addresses are never a redirect target
        for port in (2222, 80):  # the proxy refuses them too (the explicit way is its only way)
            assert sb.run(N.http_via_proxy, env.proxy, f"http://{N.UPLINK_HOST}:{port}/", timeout=3.0).status == 502
        sb.run(_tunnel_send, env.proxy, f"{late}:2223", b"ATTACK late\n")
        for addr, port in targets:  # release each listener with the host's own connection
            env.host(_send_once, addr, port, b"RELEASE")
        assert [_first_bytes(sock) for sock in listeners] == [b"RELEASE"] * 3
        # nft learnt the new address too (no redirect to it, no forwarding to it).
        N.poll(lambda: late in env.host(Nft().set_elements, "inet", env.world.table, "host_addrs"),
               what="the host's new address in the nft set")
        assert N.UPLINK_HOST in env.host(Nft().set_elements, "inet", env.world.table, "host_addrs")
    finally:
        env.world.host.ip("addr", "del", f"{late}/32", "dev", "uplink")


def test_hole4_platform_endpoints_unreachable_even_at_full(env):
    # Attack: Azure's wire server (168.63.129.16) is outside every private range; a full sandbox
    # tries it directly (nft forward) and through the proxy.
    wire = "168.63.129.16"
    env.world.inet.ip("addr", "add", f"{wire}/32", "dev", "eth0")
    env.world.host.ip("route", "add", f"{wire}/32", "via", N.UPLINK_INET)
    try:
        sb = env.sb["full"]
        assert env.host(N.http_direct, wire, 80, wire, "/host-reaches-wire").status == 200
        assert sb.run(N.tcp_refused, wire, 8443) is not None
        r = sb.run(N.http_direct, wire, 80, wire, "/wire-transparent")
        assert r.status in (403, 502)
        r = sb.run(N.http_via_proxy, env.proxy, f"http://{wire}/wire-explicit")
        assert r.status in (403, 502)
        assert env.seen("/wire-transparent") == [] and env.seen("/wire-explicit") == []
    finally:
        env.world.host.ip("route", "del", f"{wire}/32", "via", N.UPLINK_INET)
        env.world.inet.ip("addr", "del", f"{wire}/32", "dev", "eth0")


def test_sandbox_to_sandbox_is_dropped(env):
    victim = env.sb["full"]
    attacker = env.sb["limited"]
    server = victim.ns.submit(_accept_once, victim.address, 7000)
    assert attacker.run(N.tcp_refused, victim.address, 7000, timeout=0.7) is not None
    # Hairpin through the gateway instead of the bridge.
    attacker.ns.ip("route", "add", f"{victim.address}/32", "via", env.gw)
    try:
        assert attacker.run(N.tcp_refused, victim.address, 7000, timeout=0.7) is not None
    finally:
        attacker.ns.ip("route", "del", f"{victim.address}/32", "via", env.gw)
    victim.run(N.tcp_refused, victim.address, 7000)  # release the listener
    assert server.result(5) == victim.address  # the only connection it ever accepted was local


def test_host_ports_other_than_the_services_are_dropped(env):
    sb = env.sb["full"]
    git = env.cfg.git_proxy_port  # a service port, but on another host address
    targets = [(env.gw, 2222), (N.UPLINK_HOST, 2222), (N.UPLINK_HOST, git)]
    listeners = [env.world.host.submit(_accept_once, addr, port) for addr, port in targets]
    for addr, port in targets:
        assert sb.run(N.tcp_refused, addr, port) is not None, (addr, port)
    for addr, port in targets:
        env.host(N.tcp_refused, addr, port)
    assert sorted(f.result(5) for f in listeners) == sorted(addr for addr, _ in targets)
    # The appliance's own service ports are reachable.
    for port in (env.cfg.proxy_port, env.cfg.dns_port):
        assert sb.run(N.tcp_refused, env.gw, port) is None, port
    # The transparent port is only a redirect target.
    assert sb.run(N.tcp_refused, env.gw, env.cfg.transparent_proxy_port) is not None


def test_spoofing_another_sandboxs_address_is_dropped(env):
    # Attack: the none-level sandbox takes the full-level sandbox's address to borrow its policy
    # (one-way UDP is enough to leak data, even if replies go to the real owner).
    attacker, victim = env.sb["none"], env.sb["full"]
    tag = os.urandom(4).hex()
    attacker.pin_gateway()  # the attacker controls its kernel: no ARP that could give it away
    attacker.ns.ip("addr", "add", f"{victim.address}/32", "dev", "eth0")
    try:
        attacker.run(_udp_dns_probe, victim.address, f"spoofed-{tag}.test")
    finally:
        attacker.ns.ip("addr", "del", f"{victim.address}/32", "dev", "eth0")
    # The real owner's packet, sent after it on the same path, arrives; the spoofed one never did.
    victim.run(_udp_dns_probe, victim.address, f"control-{tag}.test")
    N.poll(lambda: f"control-{tag}.test" in env.world.dns_log(), what="the control packet")
    assert f"spoofed-{tag}.test" not in env.world.dns_log()


def _send_udp(source: str, target: tuple[str, int], count: int = 5) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for _ in range(count):
            s.sendto(b"hello", target)


def test_hole2_taking_another_sandboxs_mac_does_not_take_its_traffic(env):
    # Attack (issue 11, hole 2, seen in a real guest): send frames with the victim's MAC (and the
    # attacker's own IP, which its port may use). A learning bridge then moves the victim's MAC
    # onto the attacker's port, and the host's traffic for the victim (proxy replies, DNS
    # answers, the appliance's SSH) goes to the attacker.
    attacker, victim = env.sb["none"], env.sb["custom"]
    own_mac, victim_mac = attacker.mac, victim.mac
    server = victim.run(_listen, victim.address, 7100)
    attacker.pin_gateway()
    # The host knows the victim's MAC (as after any earlier exchange): it sends straight to it.
    env.world.host.ip("neigh", "replace", victim.address, "lladdr", victim_mac, "dev", env.world.bridge,
                      "nud", "permanent")
    attacker.ns.ip("link", "set", "eth0", "address", victim_mac)
    try:
        attacker.run(_send_udp, attacker.address, (env.gw, env.cfg.dns_port))
        # The host reaches the victim as before: its SYN goes to the victim's port.
        assert env.host(N.tcp_refused, victim.address, 7100, timeout=3.0) is None
        assert _first_bytes(server, timeout=5.0) is not None
        fdb = N.sh("ip", "netns", "exec", env.world.host.name, "bridge", "-j", "fdb", "show", "br", env.world.bridge)
        ports = {e["ifname"] for e in json.loads(fdb.stdout) if e.get("mac") == victim_mac}
        assert ports == {victim.tap}, ports
    finally:
        attacker.ns.ip("link", "set", "eth0", "address", own_mac)
        env.world.host.ip("neigh", "del", victim.address, "dev", env.world.bridge)


def test_hole2_frames_with_a_foreign_source_mac_are_dropped(env):
    # Attack: frames from a port carrying any MAC but its sandbox's own never enter the bridge
    # (not even with the port's own, bound IP address), so nothing can be learnt from them.
    attacker = env.sb["none"]
    own_mac = attacker.mac
    tag = os.urandom(4).hex()
    attacker.pin_gateway()
    attacker.ns.ip("link", "set", "eth0", "address", "02:00:00:00:be:ef")
    try:
        attacker.run(N.dns_query, env.gw, f"foreign-mac-{tag}.pypi.org", timeout=1.0)
    except dns.exception.Timeout:
        pass
    finally:
        attacker.ns.ip("link", "set", "eth0", "address", own_mac)
    # The same query with its own MAC arrives (and is refused: level none) — the control.
    assert attacker.run(N.dns_query, env.gw, f"own-mac-{tag}.pypi.org")[0] == "REFUSED"

    def hosts():
        return [r.host or "" for r in audit.query("sb-none", limit=1000)]

    N.poll(lambda: any(f"own-mac-{tag}" in h for h in hosts()), what="the control query in the audit log")
    assert not any(f"foreign-mac-{tag}" in h for h in hosts())


def test_ipv6_is_dropped(env):
    sb = env.sb["full"]
    bridge_ll = _link_local(env.world.host, env.world.bridge)

    def try6():
        try:
            s = socket.create_connection((f"{bridge_ll}%eth0", env.cfg.proxy_port), timeout=0.7)
            s.close()
            return "connected"
        except OSError as e:
            return str(e)

    assert sb.run(try6) != "connected"


# --- credentials, methods -------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["explicit", "transparent"])
def test_credential_injected_upstream_never_visible_in_sandbox(env, way):
    sb = env.sb["limited"]
    path = f"/v1/messages-{way}"
    headers = {"x-api-key": CREDENTIAL_PLACEHOLDER, "anthropic-version": "2023-06-01"}
    if way == "explicit":
        r = sb.run(N.https_via_proxy, env.proxy, "api.anthropic.com", env.appliance_ca, path,
                   method="POST", headers=headers, body=b"{}")  # fmt: skip
    else:
        ip = sb.run(N.dns_query, env.gw, "api.anthropic.com")[1][0]
        r = sb.run(N.https_direct, ip, 443, "api.anthropic.com", env.appliance_ca, path,
                   method="POST", headers=headers, body=b"{}")  # fmt: skip
    assert r.status == 200
    upstream = env.seen(path)
    assert len(upstream) == 1 and upstream[0]["headers"]["x-api-key"] == SECRET
    assert SECRET not in r.text and SECRET not in repr(r.headers)
    # Intercepted: the sandbox saw the appliance's certificate, so trusting only the internet's CA fails.
    with pytest.raises(OSError):
        sb.run(N.https_via_proxy, env.proxy, "api.anthropic.com", env.ca, path + "-x")
    # Nor is it written anywhere on the appliance side.
    row = N.poll(lambda: [x for x in audit.query("sb-limited", limit=10000) if x.path == path], what="audit row")[0]
    assert "credentials injected (x-api-key)" in row.reason
    assert not any(SECRET in repr(x.as_dict()) for x in audit.query("sb-limited", limit=10000))
    assert SECRET not in env.svc.proxy_log.read_text()


def test_credentials_only_for_their_host(env):
    r = env.sb["limited"].run(N.https_via_proxy, env.proxy, "pypi.org", env.ca, "/no-creds",
                               headers={"x-api-key": CREDENTIAL_PLACEHOLDER})  # fmt: skip
    assert r.status == 200
    assert env.seen("/no-creds")[0]["headers"]["x-api-key"] == CREDENTIAL_PLACEHOLDER


def test_method_restriction(env):
    sb = env.sb["readonly"]  # limited, GET/HEAD/OPTIONS only: HTTPS is intercepted to see methods
    r = sb.run(N.https_via_proxy, env.proxy, "pypi.org", env.appliance_ca, "/ro-get")
    assert r.status == 200
    r = sb.run(N.https_via_proxy, env.proxy, "pypi.org", env.appliance_ca, "/ro-post", method="POST", body=b"x")
    assert r.status == 403 and "method POST is not allowed" in r.text
    r = sb.run(N.http_via_proxy, env.proxy, "http://pypi.org/ro-put", method="PUT")
    assert r.status == 403
    assert env.seen("/ro-post") == [] and env.seen("/ro-put") == []


def _raw_through_tunnel(proxy, target: str, payload: bytes) -> tuple[int, bytes]:
    """CONNECT, then bytes that are neither TLS nor HTTP; (CONNECT status, what came back)."""
    s, refused = N.connect_tunnel(proxy, target)
    with s:
        if refused is not None:
            return refused.status, refused.body
        s.sendall(payload)
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except OSError:
            pass
        return 200, got


def test_hole9_methods_restricted_tunnel_carries_only_http(env):
    # Attack (issue 11, hole 9): GET/HEAD/OPTIONS only, yet CONNECT to any port opens a raw tunnel
    # (an SSH push to github.com:22). Only intercepted HTTP(S) on 80/443 may pass.
    sb = env.sb["readonly"]
    listener = env.world.inet.submit(_accept_once, N.INTERNET_HOSTS["pypi.org"], 2222, 4.0)
    status, body = sb.run(_raw_through_tunnel, env.proxy, "pypi.org:2222", b"SSH-2.0-OpenSSH_9.2\r\n")
    assert status == 403 and b"port 2222 is not allowed" in body
    assert listener.result(10) is None  # the internet never saw a connection
    # On an allowed port the tunnel opens, but raw bytes in it go nowhere: the web server on
    # pypi.org:80 would have answered them with its "400 Bad request".
    status, got = sb.run(_raw_through_tunnel, env.proxy, "pypi.org:80", b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    assert status == 200 and b"400" not in got
    # HTTP in the same kind of tunnel still works.
    r = sb.run(N.https_via_proxy, env.proxy, "pypi.org", env.appliance_ca, "/ro-tunnel-get")
    assert r.status == 200


def test_limited_level_reaches_allowed_hosts_only_on_its_ports(env):
    sb = env.sb["limited"]
    listener = env.world.inet.submit(_accept_once, N.INTERNET_HOSTS["pypi.org"], 2222, 4.0)
    status, body = sb.run(_raw_through_tunnel, env.proxy, "pypi.org:2222", b"hello\n")
    assert status == 403 and b"allowed ports: 80, 443" in body
    assert listener.result(10) is None
    r = sb.run(N.http_via_proxy, env.proxy, "http://pypi.org:8080/other-port")
    assert r.status == 403 and "port 8080 is not allowed" in r.text
    assert env.seen("/other-port") == []


# --- audit, lifecycle -----------------------------------------------------------------------------


def test_audit_records_every_decision(env, capsys):
    sb = env.sb["custom"]
    sb.run(N.http_via_proxy, env.proxy, "http://a.example.com/audit-ok")
    sb.run(N.http_via_proxy, env.proxy, "http://evil.example/audit-no")
    sb.run(N.dns_query, env.gw, "audit.evil.example")

    def rows():
        got = audit.query("sess-custom", limit=1000)
        paths = {(r.source, r.host, r.path, r.verdict) for r in got}
        want = {
            ("proxy", "a.example.com", "/audit-ok", "allow"),
            ("proxy", "evil.example", "/audit-no", "deny"),
            ("dns", "audit.evil.example", None, "deny"),
        }
        return got if want <= paths else None

    got = N.poll(rows, what="audit rows")
    ok = next(r for r in got if r.path == "/audit-ok")
    assert ok.sandbox_id == "sb-custom" and ok.method == "GET" and ok.port == 80 and ok.bytes > 0
    assert ok.policy == "custom" and "*.example.com" in ok.reason
    assert all(r.appliance_host is None for r in got), "a single server names no appliance host"
    from argparse import ArgumentParser

    from appliance.cli import egress_cmd

    parser = ArgumentParser()
    egress_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["egress", "log", "sb-custom", "--limit", "500"])
    assert args.handler(args, _Ctx()) in (0, None)
    out = capsys.readouterr().out
    assert "/audit-no" in out and "deny" in out and "audit.evil.example" in out


def test_detach_revokes_and_reattach_restores(env):
    sb = env.world.add_sandbox()
    env.host(bridge.bind_port, sb.tap, env.world.bridge, sb.mac)
    env.host(env.svc.attach, "sb-temp", sb.address, sb.tap, Policy.make("limited"), mac=sb.mac)
    assert sb.run(N.http_via_proxy, env.proxy, "http://pypi.org/temp").status == 200
    env.host(env.svc.detach, "sb-temp")
    env.host(env.svc.detach, "sb-temp")  # idempotent
    assert sb.run(N.tcp_refused, env.gw, env.cfg.proxy_port, timeout=0.7) is not None
    with pytest.raises((OSError, dns.exception.Timeout)):
        sb.run(N.dns_query, env.gw, "pypi.org", timeout=0.7)
    env.host(env.svc.attach, "sb-temp", sb.address, sb.tap, Policy.make("none"), mac=sb.mac)
    assert sb.run(N.http_via_proxy, env.proxy, "http://pypi.org/temp").status == 403
    env.host(env.svc.detach, "sb-temp")


def test_reconcile_is_exact_and_idempotent(env):
    nft = Nft()
    stale = env.world.add_sandbox()
    env.host(env.svc.attach, "sb-stale", stale.address, stale.tap, Policy.make("full"), mac=stale.mac)
    live = [e for e in env.svc.entries() if e.sandbox_id != "sb-stale"]
    env.host(env.svc.reconcile, live)
    first = env.host(_nft_state, nft, env.world.table)
    env.host(env.svc.reconcile, live)
    assert env.host(_nft_state, nft, env.world.table) == first
    assert stale.address not in first["sandboxes"] and stale.address not in first["full_egress"]
    assert sorted(first["sandboxes"]) == sorted(e.address for e in live)
    assert first["full_egress"] == [env.sb["full"].address]
    assert stale.run(N.tcp_refused, env.gw, env.cfg.proxy_port, timeout=0.7) is not None
    assert env.sb["limited"].run(N.http_via_proxy, env.proxy, "http://pypi.org/after-reconcile").status == 200


def test_daemon_restart_rebuilds_the_same_state(env):
    nft = Nft()
    before = env.host(_nft_state, nft, env.world.table)
    env.host(env.svc.stop)
    # While stopped: tables stay, egress gate closed, no proxy.
    assert env.sb["full"].run(N.tcp_refused, N.INTERNET_HOSTS["pypi.org"], 8443) is not None
    env.host(env.svc.start)
    assert env.host(_nft_state, nft, env.world.table) == before
    assert env.sb["limited"].run(N.http_via_proxy, env.proxy, "http://pypi.org/after-restart").status == 200


def test_proxy_down_means_no_egress_until_it_is_back(env):
    proxy = env.svc.proxy
    pid = proxy.pid
    os.kill(pid, signal.SIGKILL)
    N.poll(lambda: not env.svc.proxy_up, what="the supervisor to notice")
    full = env.sb["full"]
    assert full.run(N.tcp_refused, N.INTERNET_HOSTS["pypi.org"], 8443) is not None  # gate closed
    assert env.sb["limited"].run(N.tcp_refused, env.gw, env.cfg.proxy_port) is not None
    N.poll(lambda: env.svc.proxy_up, timeout=30, what="the proxy to be restarted")
    assert proxy.pid != pid and proxy.restarts >= 1
    assert env.sb["limited"].run(N.http_via_proxy, env.proxy, "http://pypi.org/after-crash").status == 200
    assert full.run(N.tcp_refused, N.INTERNET_HOSTS["pypi.org"], 8443) is None


# --- helpers --------------------------------------------------------------------------------------


class _Ctx:
    db = None


def _accept_once(address: str, port: int, timeout: float = 10.0) -> str | None:
    """Listen, accept one connection, return the peer's address."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(4)
        s.settimeout(timeout)
        try:
            conn, peer = s.accept()
        except socket.timeout:
            return None
        conn.close()
        return peer[0]


def _udp_dns_probe(source: str, name: str) -> None:
    """One DNS query over UDP from `source` straight to an internet address (no answer awaited)."""
    import dns.message

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(dns.message.make_query(name, "A").to_wire(), (N.INTERNET_HOSTS["pypi.org"], 53))


def _link_local(ns, dev: str) -> str:
    out = subprocess.run(["ip", "-n", ns.name, "-6", "-o", "addr", "show", "dev", dev, "scope", "link"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return out.split()[3].split("/")[0]


def _nft_state(nft: Nft, table: str) -> dict:
    return {
        "sandboxes": sorted(nft.set_elements("inet", table, "sandboxes")),
        "full_egress": sorted(nft.set_elements("inet", table, "full_egress")),
        "bindings": sorted(map(str, nft.set_elements("bridge", table, "bindings"))),
        "gate": nft.list_text("inet", table).split("chain egress_gate")[1].split("}")[0].strip(),
    }


# --- model API usage, metered by the proxy -------------------------------------------------------


def _metered_call(env, path):
    """A credentialed call to the model API stand-in from the `limited` sandbox; the usage row it
    made (waited for: the proxy's writer is asynchronous)."""
    from netpolicy.usage import ModelUsage

    mine = ModelUsage.select().where(ModelUsage.session_id == "sess-limited")
    before = mine.count()
    headers = {"x-api-key": CREDENTIAL_PLACEHOLDER, "accept-encoding": "gzip, br"}
    r = env.sb["limited"].run(N.https_via_proxy, env.proxy, "api.anthropic.com", env.appliance_ca, path,
                              method="POST", headers=headers, body=b"{}")
    assert r.status == 200 and b"usage" in r.body  # the guest got the answer unchanged
    assert env.seen(path)[-1]["headers"]["accept-encoding"] == "identity"  # so the proxy can read it passing
    N.poll(lambda: mine.count() > before, what="a usage row")
    return mine.order_by(ModelUsage.id.desc()).get()


@pytest.mark.parametrize("path,want", [
    ("/v1/messages-usage-sse", ("claude-sonnet-4-5", 321, 99, 4000, 50)),
    ("/v1/responses-usage-json", ("gpt-5-codex", 400, 42, 600, 0)),
])
def test_model_usage_is_metered_from_the_apis_answer(env, path, want):
    row = _metered_call(env, path)
    assert (row.sandbox_id, row.host) == ("sb-limited", "api.anthropic.com")
    assert (row.model, row.input_tokens, row.output_tokens, row.cache_read_tokens, row.cache_write_tokens) == want


def test_usage_in_answers_from_hosts_without_the_model_key_is_not_metered(env):
    """The guest cannot bill anything: an intercepted answer from a host without the model key
    (methods are restricted, so the proxy reads it) carries usage, and no row is written."""
    from netpolicy.usage import ModelUsage

    r = env.sb["readonly"].run(N.https_via_proxy, env.proxy, "pypi.org", env.appliance_ca,
                               "/v1/messages-usage-sse")
    assert r.status == 200 and b"message_start" in r.body
    _metered_call(env, "/v1/responses-usage-json")  # the writer keeps order: were the first metered, it is in
    assert ModelUsage.select().where(ModelUsage.host != "api.anthropic.com").count() == 0
    assert ModelUsage.select().where(ModelUsage.sandbox_id == "sb-readonly").count() == 0
