"""The egress proxy's policy, as a mitmproxy addon (run by `mitmdump -s proxy_addon.py`).

The proxy listens twice on the bridge address: as an explicit HTTP proxy (the guest's
HTTP_PROXY/HTTPS_PROXY) and as a transparent proxy (nft redirects the guest's TCP 80/443 to it).
Every decision is taken before a byte reaches an upstream (`connection_strategy=lazy`):

* CONNECT: the host asked for must be allowed (`ConnectFilter`);
* TLS ClientHello: in a CONNECT tunnel the SNI must be the CONNECT host (no domain fronting); in
  transparent mode the SNI is the host and must be allowed (`SniFilter`). Allowed connections pass
  through untouched, except to hosts with injected credentials (or under a method restriction),
  which are intercepted with the appliance CA. Refused TLS connections are intercepted too, so
  the guest (which trusts that CA) reads a 403 saying why instead of a reset;
* HTTP request headers: the Host header (and the absolute-form target) must be allowed and must
  agree with the tunnel's host; the method must be allowed, and where methods are restricted no
  protocol upgrade (`HostFilter`); the per-sandbox request rate must not be exceeded (`RateLimit`);
* CONNECT and request targets: the port must be one the level allows (`Policy.allowed_ports`:
  80 and 443 below `full` unless configured; only those where methods are restricted);
* raw TCP (neither TLS nor HTTP inside a tunnel): refused where methods are restricted
  (`RawTcpGuard`), since no method check could see it;
* server connect: the upstream is connected only for a (host, port) some decision allowed on this
  client connection, and only at an address that is not private, loopback, link-local,
  metadata, a cloud fabric endpoint or one of the host's own addresses, read from the kernel and
  re-read when they change (`UpstreamGuard`). The address is resolved here (static map, then the configured
  upstream DNS) and pinned, so DNS rebinding cannot move an allowed name onto the host.

A bare IP address as CONNECT target, SNI-less TLS target or Host is refused unless the level is
`full`. A client address with no policy is refused (fail closed). A refused request gets a 403
whose body names the blocked host and the policy. Every decision goes to the audit log.

Options are declared in `EgressOptions.load()` and checked in its `configure()`; the feature
classes share one `EgressState`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterable

from mitmproxy import connection, ctx, exceptions, http, tls
from mitmproxy.proxy import server_hooks

from netpolicy.allowlist import Decision, PolicyError, ip_literal, normalize_host
from netpolicy.audit import ALLOW, DENY, AuditWriter
from netpolicy.credentials import load_credentials
from netpolicy.hostaddrs import HostAddresses, is_host_address
from netpolicy.policy import PolicyTable, SandboxPolicy
from netpolicy.resolver import StaticHosts, Upstream, parse_upstreams
from netpolicy.ruleset import BUILTIN_BLOCKED
from netpolicy.usage import UsageParser

log = logging.getLogger(__name__)

DENY_HEADER = "X-Appliance-Egress"

# --- pure helpers ---------------------------------------------------------------------------------


def parse_networks(text: str) -> list[ipaddress.IPv4Network]:
    """Comma/space separated IPv4 networks, plus the built-in blocked list."""
    items = [*BUILTIN_BLOCKED, *(t for t in text.replace(",", " ").split() if t)]
    return [ipaddress.IPv4Network(n, strict=False) for n in items]


def is_blocked(address: str, blocked: Iterable[ipaddress.IPv4Network]) -> bool:
    ip = ip_literal(address)
    if ip is None:
        return True
    if ip.version == 6:
        mapped = ip.ipv4_mapped  # type: ignore[union-attr]
        if mapped is None:
            return True  # sandboxes have no IPv6 egress
        ip = mapped
    return any(ip in net for net in blocked)


def host_of(authority: str) -> str:
    """'example.com:8080' -> 'example.com', '[::1]:80' -> '::1'."""
    a = authority.strip()
    if a.startswith("["):
        return a[1 : a.index("]")] if "]" in a else a
    if a.count(":") == 1:
        return a.split(":", 1)[0]
    return a


def norm(host: str) -> str:
    try:
        return normalize_host(host)
    except PolicyError:
        return host.strip().lower()


def client_ip(client: connection.Client) -> str:
    ip = client.peername[0] if client.peername else ""
    return ip[7:] if ip.startswith("::ffff:") else ip


class Credentials:
    """The credentials file, reloaded when it changes. On a bad file: none (and an error log)."""

    def __init__(self, path: str):
        self.path = path
        self._stamp = None
        self._data: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.reload(strict=True)

    def reload(self, strict: bool = False) -> None:
        try:
            st = os.stat(self.path) if self.path else None
        except FileNotFoundError:
            st = None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode) if st else None
        if stamp == self._stamp and not strict:
            return
        try:
            data = load_credentials(self.path) if self.path else {}
        except (OSError, ValueError) as e:
            if strict:
                raise
            log.error("credentials file ignored: %s", e)
            data = {}
        with self._lock:
            self._data, self._stamp = data, stamp

    def get(self, host: str) -> dict[str, str] | None:
        self.reload()
        return self._data.get(norm(host))

    def hosts(self) -> set[str]:
        self.reload()
        return set(self._data)


class ConnState:
    """What the proxy decided about one client connection so far.

    (A plain class: mitmproxy runs this file as a script outside sys.modules, where
    dataclasses cannot resolve their annotations.)
    """

    def __init__(self):
        self.authorized: set[tuple[str, int]] = set()
        self.tunnel_host: str | None = None  # CONNECT target (explicit mode)
        self.tls_host: str | None = None  # SNI host (transparent mode)
        self.denied: str | None = None  # this connection is refused: the reason
        self.denied_host: str | None = None


class EgressState:
    """Everything the feature classes share: configuration and per-connection decisions."""

    def __init__(self):
        self.table: PolicyTable | None = None
        self.upstream = Upstream([])
        self.blocked = parse_networks("")
        self.credentials: Credentials | None = None
        self.audit: AuditWriter | None = None
        self.request_rate = 0
        self.conns: dict[str, ConnState] = {}
        self._host: HostAddresses | None = None
        self._host_lock = threading.Lock()

    def host_addresses(self) -> HostAddresses:
        """The host's own addresses, current (read on first use, again when they change). Blocks
        on a subprocess now and then: call it off the event loop."""
        with self._host_lock:
            if self._host is None:
                self._host = HostAddresses()
            return self._host

    def conn(self, client: connection.Client) -> ConnState:
        return self.conns.setdefault(client.id, ConnState())

    def entry(self, client: connection.Client) -> SandboxPolicy | None:
        return self.table.lookup(client_ip(client)) if self.table else None

    def decide(self, entry: SandboxPolicy | None, host: str, client: connection.Client) -> Decision:
        if entry is None:
            return Decision(False, f"no policy for address {client_ip(client)} (unknown sandbox)")
        return entry.policy.check_host(host)

    def intercept(self, entry: SandboxPolicy, host: str) -> bool:
        creds = self.credentials.get(host) if self.credentials else None
        return bool(creds) or entry.policy.methods is not None

    def record(self, client, entry, verdict, reason, *, host=None, port=None, method=None, path=None, nbytes=None):
        log.info("egress %s %s %s:%s from %s: %s", verdict, method or "", host, port, client_ip(client), reason)
        if self.audit is None:
            return
        self.audit.decision(entry, client=client_ip(client), source="proxy", host=host, port=port, method=method,
                            path=path, verdict=verdict, reason=reason, bytes=nbytes)


def deny_response(status: int, host: str, entry: SandboxPolicy | None, reason: str) -> http.Response:
    lines = [
        f"Blocked by the appliance egress policy: {host}",
        f"host: {host}",
        f"policy: {entry.policy.describe if entry else 'none (this address has no sandbox policy)'}",
    ]
    if entry is not None:
        lines.append(f"sandbox: {entry.sandbox_id}" + (f" (session {entry.session_id})" if entry.session_id else ""))
    lines.append(f"reason: {reason}")
    return http.Response.make(
        status,
        ("\n".join(lines) + "\n").encode(),
        {"Content-Type": "text/plain; charset=utf-8", DENY_HEADER: "denied", "Connection": "close"},
    )


def _deny_flow(flow: http.HTTPFlow, host: str, entry, reason: str, status: int = 403) -> None:
    flow.response = deny_response(status, host, entry, reason)
    flow.metadata["egress"] = (DENY, reason, host)


# --- the addon classes ----------------------------------------------------------------------------


class EgressOptions:
    """Declares the egress options and (re)builds the shared state from them."""

    def __init__(self, state: EgressState):
        self.state = state

    def load(self, loader):
        loader.add_option("egress_policy_file", str, "", "The per-sandbox policy table (JSON) to enforce.")
        loader.add_option("egress_audit_database", str, "", "Database URL for the egress audit log; empty: none.")
        loader.add_option("egress_audit_host", str, "", "The appliance host named in audit rows; empty: one server.")
        loader.add_option("egress_credentials_file", str, "", "TOML file: host -> header -> value to inject.")
        loader.add_option("egress_static_hosts", str, "", "Static host map: hosts-format file or inline text.")
        loader.add_option("egress_dns_upstream", str, "", "Upstream resolvers 'IP[:PORT],...'; empty: resolv.conf.")
        loader.add_option("egress_blocked_networks", str, "", "More IPv4 networks never connected to.")
        loader.add_option("egress_request_rate", int, 0, "Requests per minute per sandbox; 0: unlimited.")

    def configure(self, updated):
        o = ctx.options
        s = self.state
        if "egress_policy_file" in updated:
            s.table = PolicyTable(o.egress_policy_file) if o.egress_policy_file else None
        if "egress_blocked_networks" in updated:
            try:
                s.blocked = parse_networks(o.egress_blocked_networks)
            except ValueError as e:
                raise exceptions.OptionsError(f"egress_blocked_networks: {e}") from e
        if {"egress_static_hosts", "egress_dns_upstream"} & set(updated):
            try:
                s.upstream = Upstream(parse_upstreams(o.egress_dns_upstream), StaticHosts.load(o.egress_static_hosts))
            except (OSError, ValueError) as e:
                raise exceptions.OptionsError(f"egress_static_hosts / egress_dns_upstream: {e}") from e
        if "egress_credentials_file" in updated:
            try:
                s.credentials = Credentials(o.egress_credentials_file)
            except (OSError, ValueError) as e:
                raise exceptions.OptionsError(f"egress_credentials_file: {e}") from e
        if "egress_request_rate" in updated:
            if o.egress_request_rate < 0:
                raise exceptions.OptionsError("egress_request_rate must be >= 0")
            s.request_rate = o.egress_request_rate
        if {"egress_audit_database", "egress_audit_host"} & set(updated):
            if s.audit is not None:
                s.audit.close()
                s.audit = None
            if o.egress_audit_database:
                s.audit = AuditWriter(o.egress_audit_database, appliance_host=o.egress_audit_host or None).start()

    def client_disconnected(self, client: connection.Client):
        self.state.conns.pop(client.id, None)

    def done(self):
        if self.state.audit is not None:
            self.state.audit.close()


class ConnectFilter:
    """CONNECT host:port must be allowed for the client's sandbox."""

    def __init__(self, state: EgressState):
        self.state = state

    def http_connect(self, flow: http.HTTPFlow):
        if flow.response:
            return
        s = self.state
        entry = s.entry(flow.client_conn)
        host, port = norm(flow.request.host), flow.request.port
        decision = s.decide(entry, host, flow.client_conn)
        if not decision:
            _deny_flow(flow, host, entry, decision.reason)
            s.record(flow.client_conn, entry, DENY, decision.reason, host=host, port=port, method="CONNECT")
            return
        port_ok = entry.policy.check_port(port, host)  # type: ignore[union-attr]
        if not port_ok:
            _deny_flow(flow, f"{host}:{port}", entry, port_ok.reason)
            s.record(flow.client_conn, entry, DENY, port_ok.reason, host=host, port=port, method="CONNECT")
            return
        conn = s.conn(flow.client_conn)
        conn.tunnel_host = host
        conn.authorized.add((host, port))
        s.record(flow.client_conn, entry, ALLOW, decision.reason, host=host, port=port, method="CONNECT")


class SniFilter:
    """TLS: the SNI must match the CONNECT host (explicit) or be allowed (transparent).

    Allowed: pass through untouched, unless the host gets credentials (or methods are
    restricted), then intercept. Refused: intercept, and HostFilter answers every request 403.
    """

    def __init__(self, state: EgressState):
        self.state = state

    def tls_clienthello(self, data: tls.ClientHelloData):
        s = self.state
        client = data.context.client
        conn = s.conn(client)
        entry = s.entry(client)
        sni = norm(data.client_hello.sni) if data.client_hello.sni else None
        address = data.context.server.address
        port = address[1] if address else 443
        if conn.denied:
            data.ignore_connection = False
            return
        if conn.tunnel_host is not None:
            host = conn.tunnel_host
            if sni is not None and sni != host:
                reason = f"TLS server name {sni} does not match the CONNECT host {host} (domain fronting)"
                self._refuse(conn, entry, client, sni, port, reason)
                data.ignore_connection = False
                return
            if entry is None:
                self._refuse(conn, entry, client, host, port, f"no policy for address {client_ip(client)}")
                data.ignore_connection = False
                return
        else:
            host = sni or (address[0] if address else "")
            decision = s.decide(entry, host, client)
            if not decision:
                self._refuse(conn, entry, client, host, port, decision.reason)
                data.ignore_connection = False
                return
            if ip_literal(host) is None and not data.context.server.connected:
                data.context.server.address = (host, port)
            conn.tls_host = host
            conn.authorized.add((host, port))
            s.record(client, entry, ALLOW, decision.reason, host=host, port=port, method="TLS")
        data.ignore_connection = not s.intercept(entry, host)  # type: ignore[arg-type]

    def _refuse(self, conn: ConnState, entry, client, host, port, reason) -> None:
        conn.denied, conn.denied_host = reason, host
        self.state.record(client, entry, DENY, reason, host=host, port=port, method="TLS")


class HostFilter:
    """HTTP: the target host (absolute URL, Host header, or the tunnel's host) must be allowed,
    must be the same in all the places it appears, and the method must be allowed."""

    def __init__(self, state: EgressState):
        self.state = state

    def requestheaders(self, flow: http.HTTPFlow):
        if flow.response or flow.request.method == "CONNECT":
            return
        s = self.state
        client = flow.client_conn
        entry = s.entry(client)
        conn = s.conn(client)
        req = flow.request
        header_host = norm(host_of(req.host_header)) if req.host_header else None
        if conn.denied:
            _deny_flow(flow, conn.denied_host or header_host or req.host, entry, conn.denied)
            return
        tunnel = conn.tunnel_host or conn.tls_host
        transparent = getattr(client.proxy_mode, "type_name", "") == "transparent"
        if tunnel is not None:
            host = tunnel
            if header_host is not None and header_host != host:
                reason = f"Host header {header_host} does not match the tunnel's host {host} (domain fronting)"
                _deny_flow(flow, header_host, entry, reason)
                return
        elif transparent:
            host = header_host or norm(req.host)
        else:
            host = norm(req.host)
            if header_host is not None and header_host != host:
                reason = f"Host header {header_host} does not match the request target {host}"
                _deny_flow(flow, header_host, entry, reason)
                return
        decision = s.decide(entry, host, client)
        if not decision:
            _deny_flow(flow, host, entry, decision.reason)
            return
        method_ok = entry.policy.check_method(req.method, host)  # type: ignore[union-attr]
        if not method_ok:
            _deny_flow(flow, host, entry, method_ok.reason)
            return
        if entry.policy.methods is not None and "upgrade" in req.headers:  # type: ignore[union-attr]
            # A protocol upgrade (websocket, h2c) turns one allowed GET into a two-way byte stream.
            _deny_flow(flow, host, entry, f"protocol upgrade to {req.headers['upgrade']!r} is not allowed "
                                          "where HTTP methods are restricted")
            return
        port_ok = entry.policy.check_port(req.port, host)  # type: ignore[union-attr]
        if not port_ok:
            _deny_flow(flow, f"{host}:{req.port}", entry, port_ok.reason)
            return
        if transparent and tunnel is None and ip_literal(host) is None:
            req.host = host  # connect to the name the guest asked for, not the address it dialled
        conn.authorized.add((norm(req.host), req.port))
        flow.metadata["egress"] = (ALLOW, decision.reason, host)


class RateLimit:
    """At most `egress_request_rate` proxied requests (and CONNECTs) per minute per sandbox."""

    def __init__(self, state: EgressState):
        self.state = state
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, last refill)

    def _take(self, address: str, now: float | None = None) -> bool:
        rate = self.state.request_rate
        if rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.get(address, (float(rate), now))
        tokens = min(float(rate), tokens + (now - last) * rate / 60.0)
        if tokens < 1.0:
            self.buckets[address] = (tokens, now)
            return False
        self.buckets[address] = (tokens - 1.0, now)
        return True

    def _check(self, flow: http.HTTPFlow) -> None:
        if flow.response:
            return
        if not self._take(client_ip(flow.client_conn)):
            s = self.state
            entry = s.entry(flow.client_conn)
            host = norm(flow.request.host)
            reason = f"request rate limit of {s.request_rate} per minute exceeded"
            _deny_flow(flow, host, entry, reason, status=429)
            if flow.request.method == "CONNECT":
                s.record(flow.client_conn, entry, DENY, reason, host=host, port=flow.request.port, method="CONNECT")

    def http_connect(self, flow: http.HTTPFlow):
        self._check(flow)

    def requestheaders(self, flow: http.HTTPFlow):
        if flow.request.method != "CONNECT":
            self._check(flow)


class RawTcpGuard:
    """Bytes that are neither TLS nor HTTP (mitmproxy relays them as raw TCP) are refused where HTTP
    methods are restricted: no method check could see them (e.g. an SSH push through CONNECT :443).
    The refusal marks the client connection, so UpstreamGuard never connects it."""

    def __init__(self, state: EgressState):
        self.state = state

    def tcp_start(self, flow):
        s = self.state
        entry = s.entry(flow.client_conn)
        if entry is not None and entry.policy.methods is None:
            return
        conn = s.conn(flow.client_conn)
        host = conn.tunnel_host or conn.tls_host or (str(flow.server_conn.address[0]) if flow.server_conn.address else "")
        port = flow.server_conn.address[1] if flow.server_conn.address else None
        reason = "raw TCP (neither HTTP nor TLS) is refused where HTTP methods are restricted"
        conn.denied, conn.denied_host = conn.denied or reason, conn.denied_host or host
        s.record(flow.client_conn, entry, DENY, reason, host=host, port=port, method="TCP")


class CredentialInjector:
    """Adds the configured headers for hosts with credentials, over TLS only, replacing whatever
    placeholder the guest sent. The real values exist only here and upstream."""

    def __init__(self, state: EgressState):
        self.state = state

    def requestheaders(self, flow: http.HTTPFlow):
        if flow.response or self.state.credentials is None or flow.request.scheme != "https":
            return
        headers = self.state.credentials.get(flow.request.host)
        if not headers:
            return
        for name, value in headers.items():
            flow.request.headers[name] = value
        flow.metadata["egress_credentials"] = sorted(headers)


class ByteCounter:
    """Streams allowed responses (no buffering of large bodies) and counts their bytes."""

    def responseheaders(self, flow: http.HTTPFlow):
        if flow.metadata.get("egress", (None,))[0] != ALLOW or flow.request.method == "CONNECT":
            return
        counter = {"n": 0}
        flow.metadata["egress_bytes"] = counter

        def count(chunk: bytes) -> bytes:
            counter["n"] += len(chunk)
            return chunk

        flow.response.stream = count


class UsageMeter:
    """Meters the model API: on every request the proxy added a credential to, it asks for an
    uncompressed answer and reads the token counts the API reports as the response streams back
    (netpolicy/usage.py), one usage row per response, attributed to the client's sandbox and
    session. The guest's own figures are never used."""

    def __init__(self, state: EgressState):
        self.state = state

    def requestheaders(self, flow: http.HTTPFlow):
        if flow.response or not flow.metadata.get("egress_credentials"):
            return
        flow.request.headers["accept-encoding"] = "identity"  # so the stream can be read as it passes
        flow.metadata["egress_metered"] = True

    def responseheaders(self, flow: http.HTTPFlow):
        if not flow.metadata.get("egress_metered") or flow.response is None:
            return
        parser = UsageParser(flow.response.headers.get("content-type", ""),
                             flow.response.headers.get("content-encoding", ""))
        flow.metadata["egress_usage"] = parser
        passed_on = flow.response.stream  # ByteCounter's, when it streams the response

        def meter(chunk: bytes):
            parser.feed(chunk)
            return passed_on(chunk) if callable(passed_on) else chunk

        flow.response.stream = meter

    def _record(self, flow: http.HTTPFlow) -> None:
        parser = flow.metadata.pop("egress_usage", None)
        if parser is None:
            return
        usage = parser.finish()
        if usage is None and parser.unknown_encoding:
            # asked for identity and got something else: say so, since this answer goes unmetered
            log.warning("model API answer from %s not metered: content-encoding %r", flow.request.host,
                        flow.response.headers.get("content-encoding", ""))
        if usage is None or self.state.audit is None:
            return
        self.state.audit.usage(self.state.entry(flow.client_conn), host=norm(flow.request.host), **usage)

    def response(self, flow: http.HTTPFlow):
        self._record(flow)

    def error(self, flow: http.HTTPFlow):
        self._record(flow)  # a stream cut short still consumed what it reported so far


class RequestAudit:
    """One audit row per HTTP request the proxy saw (CONNECTs are recorded at decision time)."""

    def __init__(self, state: EgressState):
        self.state = state

    def _row(self, flow: http.HTTPFlow, error: str | None = None):
        if flow.request.method == "CONNECT" or flow.metadata.get("egress_recorded"):
            return
        flow.metadata["egress_recorded"] = True
        verdict, reason, host = flow.metadata.get("egress", (DENY, "no decision was taken", flow.request.host))
        if flow.metadata.get("egress_credentials"):
            reason += f"; credentials injected ({', '.join(flow.metadata['egress_credentials'])})"
        if error:
            reason += f"; upstream error: {error}"
        nbytes = len(flow.request.raw_content or b"")
        counted = flow.metadata.get("egress_bytes")
        if counted is not None:
            nbytes += counted["n"]
        elif flow.response is not None and verdict == ALLOW:
            nbytes += len(flow.response.raw_content or b"")
        entry = self.state.entry(flow.client_conn)
        self.state.record(
            flow.client_conn, entry, verdict, reason,
            host=host, port=flow.request.port, method=flow.request.method, path=flow.request.path, nbytes=nbytes,
        )  # fmt: skip

    def response(self, flow: http.HTTPFlow):
        self._row(flow)

    def error(self, flow: http.HTTPFlow):
        self._row(flow, error=flow.error.msg if flow.error else "unknown")


class UpstreamGuard:
    """Connect upstream only where a decision allowed, at a public address, pinned by our resolver."""

    def __init__(self, state: EgressState):
        self.state = state

    async def server_connect(self, data: server_hooks.ServerConnectionHookData):
        s = self.state
        client, server = data.client, data.server
        if server.address is None:
            server.error = "no upstream address"
            return
        host, port = norm(str(server.address[0])), server.address[1]
        conn = s.conns.get(client.id)
        entry = s.entry(client)
        if conn is not None and conn.denied:
            server.error = f"{host}:{port} refused on this connection: {conn.denied}"
            s.record(client, entry, DENY, server.error, host=host, port=port, method="TCP")
            return
        if conn is None or (host, port) not in conn.authorized:
            server.error = f"no allow decision for {host}:{port} on this connection"
            s.record(client, entry, DENY, server.error, host=host, port=port, method="TCP")
            return
        if entry is None:
            server.error = f"no policy for address {client_ip(client)}"
            s.record(client, entry, DENY, server.error, host=host, port=port, method="TCP")
            return
        if ip_literal(host) is not None:
            candidates = [host]
        else:
            try:
                candidates = await asyncio.to_thread(s.upstream.addresses, host)
            except Exception as e:  # noqa: BLE001 - any resolution failure refuses the connection
                server.error = f"cannot resolve {host}: {e}"
                s.record(client, entry, DENY, server.error, host=host, port=port, method="TCP")
                return
        try:
            own = await asyncio.to_thread(lambda: s.host_addresses().current())
        except Exception as e:  # noqa: BLE001 - without the host's addresses nothing is connected
            server.error = f"cannot read the host's own addresses: {e}"
            s.record(client, entry, DENY, server.error, host=host, port=port, method="TCP")
            return
        usable, refused = [], []
        for a in candidates:
            if is_blocked(a, s.blocked):
                refused.append(a)
            elif is_host_address(a, own):
                refused.append(f"{a}: the host's own address")
            else:
                usable.append(a)
        if not usable:
            why = "does not resolve" if not candidates else f"resolves only to blocked addresses ({', '.join(refused)})"
            server.error = f"{host} {why}"
            s.record(client, entry, DENY, server.error, host=host, port=port, method="TCP")
            return
        server.address = (usable[0], port)


def make_addons() -> list:
    state = EgressState()
    return [
        EgressOptions(state),
        RateLimit(state),
        ConnectFilter(state),
        SniFilter(state),
        HostFilter(state),
        RawTcpGuard(state),
        CredentialInjector(state),
        ByteCounter(),
        UsageMeter(state),
        RequestAudit(state),
        UpstreamGuard(state),
    ]


addons = make_addons()
