"""Issue 11, the egress layer: one test per attack a guest can try on the proxy and its policy.

Fake flows through the real addon (no sockets), like test_netpolicy_proxy_addon.py, whose helpers
and `px` fixture these reuse.
"""

import test_netpolicy_proxy_addon as fake
from helpers import make_config
from mitmproxy.test import tflow
from test_netpolicy_service import RecordingNft

from netpolicy.allowlist import Policy
from netpolicy.service import EgressPolicy

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
