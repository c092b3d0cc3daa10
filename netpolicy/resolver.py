"""The filtering resolver sandboxes use, on the bridge address (dnspython).

For each query: the source address gives the sandbox's policy (`PolicyTable`); a name the policy
does not allow gets REFUSED (so DNS cannot carry data to a name outside the allowlist), an
address with no policy gets REFUSED, anything that is not one plain question gets FORMERR or
NOTIMP. Allowed names are answered from the admin's static host map if they are in it, else
forwarded to the configured upstream resolvers, with a TTL-bounded cache. Every query is
recorded in the egress audit log.

`Upstream` (static map + forwarding + cache) is also what the proxy uses to resolve the host it
is about to connect to, so both see the same answers.

The service runs `DnsServer` as two threads (UDP and TCP) in the daemon; `python -m
netpolicy.resolver` runs it alone.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import ipaddress
import logging
import socket
import socketserver
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .allowlist import PolicyError, normalize_host
from .audit import ALLOW, DENY
from .policy import PolicyTable

log = logging.getLogger(__name__)

STATIC_TTL = 60
NEGATIVE_TTL = 30
MAX_TTL = 300


class StaticHosts:
    """Name -> IPv4 addresses, as in /etc/hosts. Consulted before upstream DNS."""

    def __init__(self, mapping: dict[str, tuple[str, ...]] | None = None):
        self.mapping = dict(mapping or {})

    @classmethod
    def parse(cls, text: str) -> StaticHosts:
        """Hosts-format text: `IP NAME [NAME...]` per line (or separated by ';'), '#' comments."""
        mapping: dict[str, list[str]] = {}
        for raw in text.replace(";", "\n").splitlines():
            line = raw.split("#", 1)[0].split()
            if len(line) < 2:
                continue
            try:
                ip = ipaddress.IPv4Address(line[0])
            except ValueError:
                continue  # IPv6 entries: sandboxes have no IPv6
            for name in line[1:]:
                try:
                    mapping.setdefault(normalize_host(name), []).append(str(ip))
                except PolicyError:
                    log.warning("static hosts: ignoring invalid name %r", name)
        return cls({k: tuple(dict.fromkeys(v)) for k, v in mapping.items()})

    @classmethod
    def load(cls, spec: str) -> StaticHosts:
        """`spec` is a path to a hosts-format file, or the inline text itself, or empty."""
        spec = (spec or "").strip()
        if not spec:
            return cls()
        if spec.startswith("/") and "\n" not in spec and ";" not in spec:
            return cls.parse(Path(spec).read_text())
        return cls.parse(spec)

    def get(self, name: str) -> tuple[str, ...] | None:
        try:
            return self.mapping.get(normalize_host(name))
        except PolicyError:
            return None

    def __len__(self) -> int:
        return len(self.mapping)


def parse_upstreams(spec: str, resolv_conf: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """`"1.1.1.1, 10.0.0.2:5353"` -> [(ip, port)]; empty: the nameservers of resolv.conf."""
    servers: list[tuple[str, int]] = []
    items = [s.strip() for s in (spec or "").split(",") if s.strip()]
    if not items:
        try:
            for line in Path(resolv_conf).read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    items.append(parts[1])
        except OSError:
            pass
    for item in items:
        host, port = item, 53
        if item.count(":") == 1:
            host, p = item.split(":")
            port = int(p)
        elif item.startswith("[") and "]:" in item:
            host, p = item[1:].split("]:")
            port = int(p)
        ipaddress.ip_address(host)
        servers.append((host, port))
    return servers


class Upstream:
    """Answers for allowed questions: static map first, else forwarded upstream, cached."""

    def __init__(
        self,
        servers: list[tuple[str, int]],
        static: StaticHosts | None = None,
        *,
        timeout: float = 2.0,
        max_entries: int = 10_000,
    ):
        self.servers = list(servers)
        self.static = static or StaticHosts()
        self.timeout = timeout
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple, tuple[float, dns.message.Message]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def answer(self, qname: dns.name.Name, rdtype: int, rdclass: int = dns.rdataclass.IN) -> dns.message.Message:
        """An upstream-style response message for one question (raises dns.exception on failure)."""
        static = self.static.get(qname.to_text(omit_final_dot=True))
        if static is not None:
            return self._static_answer(qname, rdtype, rdclass, static)
        key = (qname.to_text().lower(), rdtype, rdclass)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] > now:
                self._cache.move_to_end(key)
                self.hits += 1
                return _with_ttl(cached[1], int(cached[0] - now))
            self.misses += 1
        response = self._forward(qname, rdtype, rdclass)
        ttl = _cache_ttl(response)
        if ttl > 0:
            with self._lock:
                self._cache[key] = (now + ttl, response)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return response

    def _static_answer(self, qname, rdtype, rdclass, addresses) -> dns.message.Message:
        response = dns.message.make_response(dns.message.make_query(qname, rdtype, rdclass))
        if rdtype in (dns.rdatatype.A, dns.rdatatype.ANY) and rdclass == dns.rdataclass.IN:
            response.answer.append(dns.rrset.from_text_list(qname, STATIC_TTL, "IN", "A", list(addresses)))
        return response

    def _forward(self, qname, rdtype, rdclass) -> dns.message.Message:
        if not self.servers:
            raise dns.exception.DNSException("no upstream resolver configured")
        query = dns.message.make_query(qname, rdtype, rdclass, use_edns=0, payload=1232)
        error: Exception | None = None
        for host, port in self.servers:
            try:
                response = dns.query.udp(query, host, port=port, timeout=self.timeout)
                if response.flags & dns.flags.TC:
                    response = dns.query.tcp(query, host, port=port, timeout=self.timeout)
                return response
            except (dns.exception.DNSException, OSError) as e:
                error = e
        raise dns.exception.DNSException(f"no upstream answered: {error}")

    def addresses(self, name: str) -> list[str]:
        """The IPv4 addresses of `name` (static map, else A records through any CNAME chain)."""
        static = self.static.get(name)
        if static is not None:
            return list(static)
        response = self.answer(dns.name.from_text(normalize_host(name)), dns.rdatatype.A)
        out: list[str] = []
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.A:
                out += [r.address for r in rrset]
        return list(dict.fromkeys(out))


def _cache_ttl(response: dns.message.Message) -> int:
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return 0
    ttls = [rrset.ttl for rrset in response.answer]
    if not ttls:
        soa = [rrset for rrset in response.authority if rrset.rdtype == dns.rdatatype.SOA]
        ttls = [min(soa[0].ttl, soa[0][0].minimum)] if soa else [NEGATIVE_TTL]
    return max(0, min(min(ttls), MAX_TTL))


def _with_ttl(response: dns.message.Message, ttl: int) -> dns.message.Message:
    copy = dns.message.from_wire(response.to_wire())
    for section in (copy.answer, copy.authority):
        for rrset in section:
            rrset.ttl = min(rrset.ttl, max(ttl, 0))
    return copy


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a query whose header is readable; nothing at all for anything else."""
    if len(wire) < 12:
        return None
    qid, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    return struct.pack("!HHHHHH", qid, dns.flags.QR | (flags & 0x7800) | dns.rcode.FORMERR, 0, 0, 0, 0)


class FilteringResolver:
    """The policy half: one query in (wire format, from an address), one response out."""

    def __init__(self, table: PolicyTable, upstream: Upstream, audit=None):
        self.table = table
        self.upstream = upstream
        self.audit = audit  # an AuditWriter, or None

    def handle(self, wire: bytes, client: str, max_size: int = 65535) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        response = self._respond(query, client)
        limit = max_size
        if max_size < 65535:  # UDP: the client's EDNS buffer, at least 512
            limit = max(512, min(query.payload if query.edns >= 0 else 512, 65535))
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _respond(self, query: dns.message.Message, client: str) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        q = query.question[0]
        qname = q.name.to_text(omit_final_dot=True)
        rdtype = dns.rdatatype.to_text(q.rdtype)
        entry = self.table.lookup(client)
        if entry is None:
            self._audit(client, None, qname, rdtype, DENY, f"no policy for address {client}")
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if q.rdclass != dns.rdataclass.IN:
            self._audit(client, entry, qname, rdtype, DENY, "only class IN is answered")
            response.set_rcode(dns.rcode.REFUSED)
            return response
        decision = entry.policy.check_host(qname) if qname else None
        if not decision:
            reason = decision.reason if decision is not None else "the root name is not answered"
            self._audit(client, entry, qname, rdtype, DENY, reason)
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if q.rdtype == dns.rdatatype.AAAA:
            # Sandboxes have no IPv6 (it is dropped): an empty answer makes clients use IPv4 at once.
            self._audit(client, entry, qname, rdtype, ALLOW, f"{decision.reason}; no IPv6 for sandboxes")
            return response
        try:
            upstream = self.upstream.answer(q.name, q.rdtype, q.rdclass)
        except (dns.exception.DNSException, OSError) as e:
            self._audit(client, entry, qname, rdtype, ALLOW, f"{decision.reason}; upstream failed: {e}")
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        response.set_rcode(upstream.rcode())
        response.answer = [rrset for rrset in upstream.answer]
        response.authority = [rrset for rrset in upstream.authority]
        response.additional = [rrset for rrset in upstream.additional if rrset.rdtype != dns.rdatatype.OPT]
        self._audit(client, entry, qname, rdtype, ALLOW, f"{decision.reason}; {dns.rcode.to_text(upstream.rcode())}")
        return response

    def _audit(self, client, entry, host, rdtype, verdict, reason) -> None:
        log.debug("dns %s %s %s from %s: %s", verdict, rdtype, host, client, reason)
        if self.audit is None:
            return
        self.audit.decision(entry, client=client, source="dns", host=host, port=None, method=rdtype,
                            verdict=verdict, reason=reason)


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        reply = self.server.resolver.handle(data, self.client_address[0], max_size=512)
        if reply is not None:
            sock.sendto(reply, self.client_address)


@dataclasses.dataclass(frozen=True)
class TcpLimits:
    """What one guest can hold of the resolver's TCP listener (each connection is a thread)."""

    max_connections: int = 64  # open connections in total
    max_per_client: int = 4  # open connections per source address (sandbox)
    idle_timeout: float = 5.0  # seconds for each whole query to arrive (and between queries)


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        idle = self.server.limits.idle_timeout
        while True:
            # One deadline per query, not per read: a client dribbling a byte at a time cannot
            # keep the connection (and its thread) forever.
            deadline = time.monotonic() + idle
            try:
                head = _recv_exact(self.request, 2, deadline)
                if not head:
                    return
                (length,) = struct.unpack("!H", head)
                data = _recv_exact(self.request, length, deadline)
            except OSError:
                return
            if data is None:
                return
            reply = self.server.resolver.handle(data, self.client_address[0])
            if reply is None:
                return
            self.request.settimeout(idle)
            self.request.sendall(struct.pack("!H", len(reply)) + reply)


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes | None:
    """Exactly n bytes before `deadline` (time.monotonic); None on EOF; TimeoutError when late."""
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("query not complete within the idle timeout")
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class _UDPServer(socketserver.ThreadingUDPServer):
    """Queries are answered by a bounded pool of threads, not one new thread per datagram."""

    daemon_threads = True
    allow_reuse_address = True
    workers = 16

    def server_activate(self):
        super().server_activate()
        self.pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="dns-udp")

    def process_request(self, request, client_address):
        self.pool.submit(self.process_request_thread, request, client_address)

    def server_close(self):
        super().server_close()
        if hasattr(self, "pool"):  # not when binding failed
            self.pool.shutdown(wait=False, cancel_futures=True)


class _TCPServer(socketserver.ThreadingTCPServer):
    """One thread per connection, but only as many connections as `TcpLimits` allow: beyond them a
    new connection is closed at once (the client retries or uses UDP)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, limits: TcpLimits):
        self.limits = limits
        self._open: collections.Counter[str] = collections.Counter()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def verify_request(self, request, client_address) -> bool:
        client = client_address[0]
        with self._open_lock:
            total = sum(self._open.values())
            if total >= self.limits.max_connections or self._open[client] >= self.limits.max_per_client:
                log.info("resolver: TCP connection from %s refused (%d open from it, %d in total)",
                         client, self._open[client], total)
                return False
            self._open[client] += 1
        return True

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open[client_address[0]] -= 1
                if self._open[client_address[0]] <= 0:
                    del self._open[client_address[0]]


class DnsServer:
    """UDP and TCP listeners on (host, port), each served by its own thread."""

    def __init__(self, resolver: FilteringResolver, host: str, port: int = 53, *, tcp_limits: TcpLimits | None = None):
        self.resolver = resolver
        self.host = host
        self.port = port
        self.tcp_limits = tcp_limits or TcpLimits()
        self.tcp_port = port
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> DnsServer:
        try:
            udp = _UDPServer((self.host, self.port), _UDPHandler)
            tcp = _TCPServer((self.host, self.port or udp.server_address[1]), _TCPHandler, self.tcp_limits)
            self.tcp_port = tcp.server_address[1]
        except OSError:
            self.stop()
            raise
        for server, name in ((udp, "udp"), (tcp, "tcp")):
            server.resolver = self.resolver  # type: ignore[attr-defined]
            self._servers.append(server)
            t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"dns-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("resolver listening on %s:%d (udp, tcp)", self.host, self.port)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for t in self._threads:
            t.join(5)
        self._servers, self._threads = [], []


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a thin runner
    """Run the resolver alone: `python -m netpolicy.resolver` with the appliance configuration."""
    from appliance_base import config as appconfig
    from appliance_base.db import connect_database

    from .audit import AuditWriter

    parser = argparse.ArgumentParser(description="The appliance's filtering resolver, standalone.")
    parser.add_argument("--listen", help="address to bind (default: the bridge address)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = appconfig.load()
    connect_database(cfg.database_url)  # the daemon's schema: `appliance serve` migrates it
    audit = AuditWriter(cfg.database_url, retention_days=cfg.audit_retention_days, max_rows=cfg.audit_max_rows,
                        appliance_host=cfg.appliance_host).start()
    table = PolicyTable(cfg.state_dir / "egress" / "policy.json")
    upstream = Upstream(parse_upstreams(cfg.dns_upstream), StaticHosts.load(cfg.static_hosts))
    server = DnsServer(FilteringResolver(table, upstream, audit), args.listen or str(cfg.bridge_address), cfg.dns_port)
    server.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        audit.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
