"""Issue 11, the egress layer: one test per attack a guest can try on the proxy and its policy.

Fake flows through the real addon (no sockets), like test_netpolicy_proxy_addon.py, whose helpers
and `px` fixture these reuse.
"""

import dataclasses
import select
import socket
import struct

import dns.message
import pytest
import test_netpolicy_proxy_addon as fake
from mitmproxy.test import tflow
from test_netpolicy_service import RecordingNft

from netpolicy import ruleset
from netpolicy.allowlist import Policy
from netpolicy.hostaddrs import HostAddresses, is_host_address, read_host_addresses
from netpolicy.service import EgressPolicy

from helpers import make_config

FULL, LIMITED, READONLY = fake.FULL, fake.LIMITED, fake.READONLY
client, connect_flow, hello, request_flow, server_connect = (
    fake.client, fake.connect_flow, fake.hello, fake.request_flow, fake.server_connect)
px = fake.px  # the fixture: the real addon with a policy table of fake sandboxes

# --- hole 9: method restriction bypass through CONNECT ----------------------------------------------


def test_hole9_connect_to_a_non_http_port_is_refused_where_methods_are_restricted(px):
    """GET,HEAD only: `CONNECT github.com:22` (an SSH push) must not open a tunnel."""
    f = connect_flow(client(READONLY), "github.com", 22)
    px.hook("http_connect", f)
    assert f.response is not None and f.response.status_code == 403
    body = f.response.get_text()
    assert "port 22" in body and "allowed ports: 80, 443" in body


def test_hole9_raw_bytes_in_an_allowed_tunnel_never_reach_upstream(px):
    """CONNECT pypi.org:443 is allowed, but what follows is not TLS nor HTTP: mitmproxy would relay
    it as raw TCP. Where methods are restricted nothing but intercepted HTTP(S) may pass."""
    c = client(READONLY)
    px.hook("http_connect", connect_flow(c, "pypi.org", 443))
    flow = tflow.ttcpflow(client_conn=c)
    px.hook("tcp_start", flow)
    server = server_connect(px, c, ("pypi.org", 443))
    assert server.error and "raw TCP" in server.error
    assert any(r["verdict"] == "deny" and "raw TCP" in r["reason"] for r in px.rows())


def test_hole9_websocket_upgrade_is_refused_where_methods_are_restricted(px):
    """An Upgrade turns an allowed GET into a two-way byte stream: refused under a method restriction."""
    f = request_flow(client(READONLY), "github.com", method="GET")
    f.request.headers["Upgrade"] = "websocket"
    f.request.headers["Connection"] = "Upgrade"
    px.hook("requestheaders", f)
    assert f.response is not None and f.response.status_code == 403
    assert "upgrade" in f.response.get_text().lower()
    f = request_flow(client(LIMITED), "github.com", method="GET")  # no restriction: allowed
    f.request.headers["Upgrade"] = "websocket"
    px.hook("requestheaders", f)
    assert f.response is None


def test_hole9_full_level_with_methods_restricted_gets_no_raw_forwarding(tmp_path):
    """At `full` nft forwards any protocol; with a method restriction it must not, or the
    restriction is bypassed by simply not using the proxy."""
    svc = EgressPolicy(make_config(tmp_path / "state", egress_methods_full="GET,HEAD"), nft=RecordingNft())
    svc.attach("sb-1", "10.213.0.10", "aplt1", Policy.make("full"))
    assert "full_egress" not in svc.nft.scripts[-1]


# --- hole 4: level full reaches the host itself -----------------------------------------------------


def test_hole4_full_never_connects_to_the_hosts_own_addresses(px):
    """The host's public address is no private range, yet it is the host (sshd, console...)."""
    own = "198.51.100.9"
    px.state._host = HostAddresses(reader=lambda: frozenset({own, "::1", "127.0.0.1"}))
    c = fake.client(FULL)
    for target in (own, f"::ffff:{own}"):
        px.hook("http_connect", connect_flow(c, target, 22))
        server = server_connect(px, c, (target, 22))
        assert server.error and "the host's own address" in server.error, target
    assert any(r["verdict"] == "deny" and own in r["reason"] for r in px.rows())


def test_hole4_platform_endpoints_are_blocked_at_every_level(px):
    c = fake.client(FULL)
    px.hook("http_connect", connect_flow(c, "168.63.129.16", 80))
    assert "blocked" in server_connect(px, c, ("168.63.129.16", 80)).error
    assert "168.63.129.16/32" in ruleset.BUILTIN_BLOCKED  # so nft forwarding refuses it too


def test_hole4_nft_never_redirects_or_forwards_to_the_host(tmp_path):
    rs = EgressPolicy(make_config(tmp_path / "state"), nft=RecordingNft()).base
    text = ruleset.render(dataclasses.replace(rs, host_addresses=("198.51.100.9", "::1", "10.213.0.1")))
    assert "elements = { 10.213.0.1, 198.51.100.9 }" in text
    assert "ip daddr @host_addrs accept" in text.split("redirect to")[0]  # before the redirect rule
    assert "ip daddr @host_addrs jump refuse" in text.split("chain sandbox_out")[1].split("}")[0]
    change = ruleset.render_host_addresses(dataclasses.replace(rs, host_addresses=("198.51.100.10",)))
    assert change.splitlines() == ["flush set inet appliance host_addrs",
                                   "add element inet appliance host_addrs { 198.51.100.10 }"]


def test_host_addresses_are_read_from_the_kernel():
    own = read_host_addresses()
    assert "127.0.0.1" in own
    assert is_host_address("::ffff:127.0.0.1", own) and not is_host_address("not-an-ip", own)


# --- allowed ports per level (limited / custom) ----------------------------------------------------


def test_limited_level_allows_only_its_ports_and_says_so(px):
    f = connect_flow(client(LIMITED), "github.com", 22)
    px.hook("http_connect", f)
    assert f.response is not None and f.response.status_code == 403
    assert "port 22 is not allowed" in f.response.get_text() and "80, 443" in f.response.get_text()
    f = request_flow(client(LIMITED), "pypi.org", port=8080)  # absolute-form http://pypi.org:8080/
    px.hook("requestheaders", f)
    assert f.response is not None and f.response.status_code == 403 and "port 8080" in f.response.get_text()
    c = client(LIMITED)
    ok = connect_flow(c, "pypi.org", 443)
    px.hook("http_connect", ok)
    assert ok.response is None
    assert hello(px, c, "pypi.org", ("pypi.org", 443)).ignore_connection is True
    f = connect_flow(client(FULL), "example.org", 22)  # full: any port
    px.hook("http_connect", f)
    assert f.response is None


def test_allowed_ports_per_level_come_from_config(tmp_path):
    cfg = make_config(tmp_path / "state", egress_ports_custom="443,8443")
    svc = EgressPolicy(cfg, nft=RecordingNft())
    svc.attach("sb-1", "10.213.0.10", "aplt1", Policy.make("limited"))
    svc.attach("sb-2", "10.213.0.11", "aplt2", Policy.make("custom", ["a.example"]))
    svc.attach("sb-3", "10.213.0.12", "aplt3", Policy.make("full"))
    assert svc.table.get("sb-1").policy.ports == (80, 443)
    assert svc.table.get("sb-2").policy.ports == (443, 8443)
    assert svc.table.get("sb-3").policy.ports is None
    assert not svc.table.get("sb-2").policy.check_port(80, "a.example")
    assert svc.table.get("sb-2").policy.check_port(8443, "a.example")


# --- hole 13: the resolver's TCP listener ---------------------------------------------------------


@pytest.fixture
def dns_server(tmp_path):
    from test_netpolicy_resolver import CountingUpstream

    from netpolicy.policy import PolicyTable
    from netpolicy.resolver import DnsServer, FilteringResolver, TcpLimits

    table = PolicyTable(tmp_path / "policy.json")
    for _attempt in range(10):  # port 0: UDP picks a port, TCP may find that number taken
        server = DnsServer(FilteringResolver(table, CountingUpstream({}), None), "127.0.0.1", 0,
                           tcp_limits=TcpLimits(max_connections=6, max_per_client=2, idle_timeout=1.0))
        try:
            server.start()
            break
        except OSError:
            continue
    yield server
    server.stop()


def _open_silent(port: int, source: str, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        socks.append(s)
    return socks


def _still_open(socks: list[socket.socket], settle: float = 2.0) -> list[socket.socket]:
    """The connections the server has not closed: a closed one reads EOF (or a reset) at once;
    whatever stays silent for `settle` seconds after the last closure is open."""
    alive = list(socks)
    while alive:
        readable, _, _ = select.select(alive, [], [], settle)
        if not readable:
            break
        for s in readable:
            try:
                if s.recv(1) == b"":
                    alive.remove(s)
            except OSError:
                alive.remove(s)
    return alive


def test_hole13_one_sandbox_cannot_park_unbounded_resolver_connections(dns_server):
    """Attack: a guest opens many TCP connections to the resolver and sends nothing, to park
    threads in the daemon. Only `max_per_client` stay; another sandbox is still served."""
    port = dns_server.tcp_port
    hog = _open_silent(port, "127.0.0.2", 12)
    try:
        assert len(_still_open(hog, settle=0.5)) <= 2
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.3", 0)) as s:
            q = dns.message.make_query("pypi.org", "A")
            s.sendall(struct.pack("!H", len(q.to_wire())) + q.to_wire())
            (n,) = struct.unpack("!H", s.recv(2))
            assert dns.message.from_wire(s.recv(n)).id == q.id  # answered (REFUSED: no policy)
    finally:
        for s in hog:
            s.close()


def test_hole13_total_resolver_connections_are_capped(dns_server):
    port = dns_server.tcp_port
    socks = []
    try:
        for i in range(10):  # 10 sandboxes x 2 connections each: the total cap (6) holds
            socks += _open_silent(port, f"127.0.1.{i + 1}", 2)
        assert len(_still_open(socks, settle=0.5)) <= 6
    finally:
        for s in socks:
            s.close()


def test_hole13_a_dribbling_connection_is_closed_after_the_idle_timeout(dns_server):
    """Attack: send one byte every few hundred ms so no single read ever times out."""
    with socket.create_connection(("127.0.0.1", dns_server.tcp_port), timeout=5) as s:
        s.sendall(struct.pack("!H", 4000))  # announce a 4000-byte query, then send it one byte at a time
        closed = False
        for _ in range(40):  # 40 x 0.25 s: far past the 1 s idle timeout
            try:
                s.sendall(b"\x00")
            except OSError:
                closed = True
                break
            if select.select([s], [], [], 0.25)[0]:
                try:
                    closed = s.recv(1) == b""
                except OSError:
                    closed = True
                if closed:
                    break
        assert closed, "the server kept a connection that never completed a query"


# --- hole 2: layer 2 ----------------------------------------------------------------------------------


def test_hole2_guest_macs_cannot_be_derived_from_sandbox_ids(db):
    """The MAC was 52:54:00 + the id's first hex digits: a guest that saw another's id (in a
    hostname, a log, a share link) knew its MAC. Now it is random and kept on the row."""
    from appliance.models import Sandbox

    rows = [Sandbox.create(profile="minimal", image_dir="/img", vcpus=1, memory_mb=512, disk_gb=1,
                           address=f"10.213.0.{10 + i}") for i in range(2)]  # fmt: skip
    for row in rows:
        stored = Sandbox.get_by_id(row.id).mac
        old_style = "52:54:00:" + ":".join(row.id[3:9][i:i + 2] for i in (0, 2, 4))
        assert stored and stored != old_style and row.id[3:9] not in stored.replace(":", "")
    assert rows[0].mac != rows[1].mac


def test_hole2_the_bridge_binds_each_tap_to_its_guests_mac(tmp_path):
    svc = EgressPolicy(make_config(tmp_path / "state"), nft=RecordingNft())
    svc.attach("sb-1", "10.213.0.10", "aplt1", Policy.make("limited"), mac="02:5E:00:00:00:01")
    assert '"aplt1" . 02:5e:00:00:00:01 . 10.213.0.10' in svc.nft.scripts[-1]
    text = ruleset.render(svc._ruleset(svc.entries()))
    bridge_pre = text.rsplit("table bridge", 1)[1].split("chain prerouting")[1].split("}")[0]
    assert "iifname . ether saddr . ip saddr @bindings" in bridge_pre
    assert "iifname . ether saddr . arp saddr ip @bindings iifname . arp saddr ether" in bridge_pre
    with pytest.raises(Exception, match="not a unicast MAC"):
        svc.attach("sb-2", "10.213.0.11", "aplt2", Policy.make("limited"), mac="01:00:5e:00:00:01")
