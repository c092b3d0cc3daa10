"""The proxy addon with fake flows (mitmproxy.test): no sockets, no mitmdump."""

import asyncio
import ssl

import pytest
from mitmproxy import connection, http
from mitmproxy.proxy import context as pcontext
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils
from mitmproxy.tls import ClientHelloData

from netpolicy import proxy_addon as P
from netpolicy.allowlist import Policy
from netpolicy.policy import PolicyTable, SandboxPolicy

SECRET = "sk-real-secret"
LIMITED, NONE, FULL, READONLY, UNKNOWN = "10.213.0.10", "10.213.0.11", "10.213.0.12", "10.213.0.13", "10.213.0.99"


class Proxy:
    def __init__(self, tctx, addons):
        self.tctx, self.addons, self.state = tctx, addons, addons[0].state
        self.audit_rows = []

    def hook(self, name, *args):
        for a in self.addons:
            fn = getattr(a, name, None)
            if fn is not None:
                result = fn(*args)
                if asyncio.iscoroutine(result):
                    self.tctx.master.event_loop.run_until_complete(result)

    def rows(self):
        return self.audit_rows


@pytest.fixture
def px(tmp_path):
    table = PolicyTable(tmp_path / "policy.json")
    table.put(SandboxPolicy("sb-l", LIMITED, "aplt0", Policy.make("limited"), "s-l"))
    table.put(SandboxPolicy("sb-n", NONE, "aplt1", Policy.make("none")))
    table.put(SandboxPolicy("sb-f", FULL, "aplt2", Policy.make("full")))
    table.put(SandboxPolicy("sb-r", READONLY, "aplt3", Policy.make("limited", methods="GET,HEAD")))
    creds = tmp_path / "credentials.toml"
    creds.write_text(f'["api.anthropic.com"]\nx-api-key = "{SECRET}"\n')
    creds.chmod(0o600)
    addons = P.make_addons()
    with taddons.context(*addons) as tctx:
        tctx.configure(
            addons[0],
            egress_policy_file=str(tmp_path / "policy.json"),
            egress_credentials_file=str(creds),
            egress_static_hosts="203.0.113.10 pypi.org; 169.254.169.254 meta.pypi.org; "
            "203.0.113.20 api.anthropic.com; 10.1.2.3 internal.example",
        )
        p = Proxy(tctx, addons)
        p.state.record = lambda client, entry, verdict, reason, **kw: p.audit_rows.append(
            dict(client=P.client_ip(client), sandbox=entry.sandbox_id if entry else None, verdict=verdict, reason=reason, **kw)
        )
        yield p


def client(ip, mode="regular"):
    c = tflow.tclient_conn()
    c.peername = (ip, 40000)
    c.proxy_mode = ProxyMode.parse(mode)
    return c


def connect_flow(c, host, port=443):
    req = tutils.treq(method=b"CONNECT", host=host, port=port, path=b"", authority=f"{host}:{port}".encode(),
                      headers=http.Headers(), content=b"")  # fmt: skip
    return tflow.tflow(client_conn=c, req=req)


def request_flow(c, host, *, port=80, method="GET", path="/", host_header=None, scheme="http"):
    headers = http.Headers(host=host_header or host) if host_header is not False else http.Headers()
    req = tutils.treq(method=method.encode(), host=host, port=port, path=path.encode(), scheme=scheme.encode(),
                      headers=headers, content=b"")  # fmt: skip
    return tflow.tflow(client_conn=c, req=req)


def client_hello(sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return parse_client_hello(outgoing.read())


def hello(p, c, sni, server_address):
    ctx = pcontext.Context(c, p.tctx.options)
    ctx.server.address = server_address
    data = ClientHelloData(ctx, client_hello(sni))
    p.hook("tls_clienthello", data)
    return data


def server_connect(p, c, address):
    server = connection.Server(address=address)
    data = server_hooks.ServerConnectionHookData(server=server, client=c)
    p.hook("server_connect", data)
    return server


# --- CONNECT --------------------------------------------------------------------------------------


def test_connect_allowed_and_denied(px):
    c = client(LIMITED)
    f = connect_flow(c, "pypi.org")
    px.hook("http_connect", f)
    assert f.response is None
    f = connect_flow(client(LIMITED), "evil.example")
    px.hook("http_connect", f)
    assert f.response.status_code == 403
    body = f.response.get_text()
    assert "evil.example" in body and "policy: limited" in body and "sb-l (session s-l)" in body
    assert f.response.headers[P.DENY_HEADER] == "denied"
    assert [(r["host"], r["verdict"], r["method"]) for r in px.rows()] == [
        ("pypi.org", "allow", "CONNECT"),
        ("evil.example", "deny", "CONNECT"),
    ]


def test_unknown_address_is_denied(px):
    f = connect_flow(client(UNKNOWN), "pypi.org")
    px.hook("http_connect", f)
    assert f.response.status_code == 403 and "no policy for address" in f.response.get_text()


def test_connect_to_bare_ip_only_at_full(px):
    f = connect_flow(client(LIMITED), "203.0.113.10")
    px.hook("http_connect", f)
    assert f.response.status_code == 403 and "bare IP address" in f.response.get_text()
    f = connect_flow(client(FULL), "203.0.113.10")
    px.hook("http_connect", f)
    assert f.response is None


# --- TLS ClientHello ------------------------------------------------------------------------------


def test_sni_must_match_connect_host(px):
    c = client(LIMITED)
    px.hook("http_connect", connect_flow(c, "pypi.org"))
    data = hello(px, c, "evil.example", ("pypi.org", 443))
    assert data.ignore_connection is False  # intercepted only to answer 403
    f = request_flow(c, "pypi.org", port=443, scheme="https", host_header="evil.example")
    px.hook("requestheaders", f)
    assert f.response.status_code == 403 and "does not match the CONNECT host" in f.response.get_text()
    server = server_connect(px, c, ("pypi.org", 443))
    assert server.error  # and nothing may be connected for this client connection


def test_matching_sni_passes_through_untouched(px):
    c = client(LIMITED)
    px.hook("http_connect", connect_flow(c, "pypi.org"))
    assert hello(px, c, "pypi.org", ("pypi.org", 443)).ignore_connection is True


def test_credential_host_is_intercepted(px):
    c = client(LIMITED)
    px.hook("http_connect", connect_flow(c, "api.anthropic.com"))
    assert hello(px, c, "api.anthropic.com", ("api.anthropic.com", 443)).ignore_connection is False


def test_transparent_sni_decides_and_replaces_the_dialled_address(px):
    c = client(LIMITED, "transparent")
    data = hello(px, c, "pypi.org", ("203.0.113.66", 443))
    assert data.ignore_connection is True
    assert data.context.server.address == ("pypi.org", 443)
    c2 = client(LIMITED, "transparent")
    data = hello(px, c2, "evil.example", ("203.0.113.66", 443))
    assert data.ignore_connection is False
    f = request_flow(c2, "203.0.113.66", port=443, scheme="https", host_header="evil.example")
    px.hook("requestheaders", f)
    assert f.response.status_code == 403 and "evil.example" in f.response.get_text()


def test_transparent_tls_without_sni_is_a_bare_ip(px):
    c = client(LIMITED, "transparent")
    data = hello(px, c, None, ("203.0.113.10", 443))
    assert data.ignore_connection is False
    assert any("bare IP address" in r["reason"] for r in px.rows())


# --- HTTP requests --------------------------------------------------------------------------------


def test_plain_http_explicit(px):
    f = request_flow(client(LIMITED), "pypi.org")
    px.hook("requestheaders", f)
    assert f.response is None and f.metadata["egress"][0] == "allow"
    f = request_flow(client(LIMITED), "pypi.org", host_header="evil.example")
    px.hook("requestheaders", f)
    assert f.response.status_code == 403 and "does not match the request target" in f.response.get_text()
    f = request_flow(client(NONE), "pypi.org")
    px.hook("requestheaders", f)
    assert f.response.status_code == 403 and "level none" in f.response.get_text()


def test_plain_http_transparent_goes_to_the_host_header(px):
    c = client(LIMITED, "transparent")
    f = request_flow(c, "203.0.113.66", host_header="pypi.org")
    px.hook("requestheaders", f)
    assert f.response is None and f.request.host == "pypi.org"
    assert ("pypi.org", 80) in px.state.conns[c.id].authorized
    f = request_flow(client(LIMITED, "transparent"), "203.0.113.10", host_header=False)
    px.hook("requestheaders", f)
    assert f.response.status_code == 403 and "bare IP" in f.response.get_text()


def test_methods(px):
    f = request_flow(client(READONLY), "pypi.org", method="POST")
    px.hook("requestheaders", f)
    assert f.response.status_code == 403 and "method POST is not allowed" in f.response.get_text()
    f = request_flow(client(READONLY), "pypi.org", method="HEAD")
    px.hook("requestheaders", f)
    assert f.response is None
    c = client(READONLY)
    px.hook("http_connect", connect_flow(c, "pypi.org"))
    assert hello(px, c, "pypi.org", ("pypi.org", 443)).ignore_connection is False  # to see methods


def test_rate_limit(px):
    px.tctx.configure(px.addons[0], egress_request_rate=3)
    statuses = []
    for _ in range(5):
        f = request_flow(client(LIMITED), "pypi.org")
        px.hook("requestheaders", f)
        statuses.append(f.response.status_code if f.response else 200)
    assert statuses == [200, 200, 200, 429, 429]
    limiter = next(a for a in px.addons if isinstance(a, P.RateLimit))
    tokens, last = limiter.buckets[LIMITED]
    assert limiter._take(LIMITED, now=last + 20.0)  # 3 per minute: one more after 20 s


def test_credentials_injected_over_tls_only(px):
    c = client(LIMITED)
    px.hook("http_connect", connect_flow(c, "api.anthropic.com"))
    hello(px, c, "api.anthropic.com", ("api.anthropic.com", 443))
    f = request_flow(c, "api.anthropic.com", port=443, scheme="https")
    f.request.headers["x-api-key"] = "placeholder"
    px.hook("requestheaders", f)
    assert f.response is None and f.request.headers["x-api-key"] == SECRET
    f.response = tutils.tresp()
    px.hook("response", f)
    row = px.rows()[-1]
    assert "credentials injected (x-api-key)" in row["reason"] and SECRET not in repr(px.rows())
    plain = request_flow(client(LIMITED), "api.anthropic.com")
    plain.request.headers["x-api-key"] = "placeholder"
    px.hook("requestheaders", plain)
    assert plain.request.headers["x-api-key"] == "placeholder"  # never over plain HTTP


# --- upstream connections -------------------------------------------------------------------------


def test_upstream_only_where_a_decision_allowed(px):
    c = client(LIMITED)
    assert "no allow decision" in server_connect(px, c, ("pypi.org", 443)).error
    px.hook("http_connect", connect_flow(c, "pypi.org"))
    server = server_connect(px, c, ("pypi.org", 443))
    assert server.error is None and server.address == ("203.0.113.10", 443)  # pinned
    assert server_connect(px, c, ("pypi.org", 8443)).error


def test_upstream_never_private_or_metadata(px):
    c = client(FULL)
    for host in ("meta.pypi.org", "internal.example", "169.254.169.254", "127.0.0.1", "10.213.0.1"):
        px.hook("http_connect", connect_flow(c, host, 80))
        server = server_connect(px, c, (host, 80))
        assert server.error and "blocked" in server.error, host


def test_byte_count_and_audit(px):
    c = client(LIMITED)
    f = request_flow(c, "pypi.org", path="/simple/")
    px.hook("requestheaders", f)
    f.response = tutils.tresp(content=b"")
    px.hook("responseheaders", f)
    f.response.stream(b"x" * 1000)
    f.response.stream(b"")
    px.hook("response", f)
    row = px.rows()[-1]
    assert row["verdict"] == "allow" and row["path"] == "/simple/" and row["nbytes"] == 1000


def test_pure_helpers():
    assert P.host_of("example.com:8080") == "example.com" and P.host_of("[::1]:80") == "::1"
    nets = P.parse_networks("203.0.113.0/24")
    assert P.is_blocked("203.0.113.5", nets) and P.is_blocked("169.254.169.254", nets)
    assert P.is_blocked("::ffff:127.0.0.1", nets) and P.is_blocked("2001:db8::1", nets)
    assert not P.is_blocked("198.51.100.1", nets)
    assert P.is_blocked("not-an-ip", nets)


def test_model_usage_is_metered_from_the_response_of_a_credentialed_request(px):
    metered = []
    px.state.audit = type("Writer", (), {"usage": lambda self, entry, **kw: metered.append((entry.session_id, kw))})()
    c = client(LIMITED)
    px.hook("http_connect", connect_flow(c, "api.anthropic.com"))
    hello(px, c, "api.anthropic.com", ("api.anthropic.com", 443))
    f = request_flow(c, "api.anthropic.com", port=443, method="POST", path="/v1/messages", scheme="https")
    f.request.headers["accept-encoding"] = "gzip, br"
    px.hook("requestheaders", f)
    assert f.request.headers["accept-encoding"] == "identity"  # the stream must be readable as it passes
    f.response = tutils.tresp(content=b"", headers=http.Headers(content_type="text/event-stream"))
    px.hook("responseheaders", f)
    body = (b'data: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":12,'
            b'"output_tokens":1}}}\n\ndata: {"type":"message_delta","usage":{"output_tokens":34}}\n\n')
    passed = [f.response.stream(body[:40]), f.response.stream(body[40:]), f.response.stream(b"")]
    assert b"".join(passed) == body  # the guest gets every byte unchanged
    px.hook("response", f)
    assert metered == [("s-l", {"host": "api.anthropic.com", "model": "claude-x", "input_tokens": 12,
                                "output_tokens": 34, "cache_read_tokens": 0, "cache_write_tokens": 0})]
    assert px.rows()[-1]["nbytes"] == len(body)  # the byte count still sees the stream


def test_usage_the_guest_claims_elsewhere_is_not_metered(px):
    metered = []
    px.state.audit = type("Writer", (), {"usage": lambda self, entry, **kw: metered.append(kw)})()
    c = client(LIMITED)
    f = request_flow(c, "pypi.org", method="POST", path="/v1/messages")  # no credential: not the model API
    px.hook("requestheaders", f)
    f.response = tutils.tresp(content=b"", headers=http.Headers(content_type="application/json"))
    px.hook("responseheaders", f)
    f.response.stream(b'{"type":"message","usage":{"input_tokens":1,"output_tokens":1}}')
    px.hook("response", f)
    assert metered == []
