"""A small world in network namespaces for the egress tests and `scripts/bench egress`.

    host      the appliance host: the bridge (10.250.N.1/24), nft tables, mitmdump, resolver
    inet      "the internet": 198.51.100.2 (uplink) and 203.0.113.0/24 addresses; HTTP on 80,
              HTTPS on 443 and 8443 (one certificate from a test CA for every test name),
              DNS on 53 for names outside the static map
    sbN       fake sandboxes: a veth whose host end (named like a tap) is on the bridge

Nothing here touches the namespace the tests run in: every link, address, table and process
lives in a namespace created here and removed by `World.close()` (also for worlds left behind by
a killed run: `sweep()`). Code runs "inside" a namespace through `Netns.run(fn)`, which executes
`fn` on a thread that has entered that namespace (sockets and child processes created there
belong to it), so the test process itself never moves.

Tests that must route test addresses in the namespace they run in (the vm tests: guests live there)
call `check_test_routes(addresses)` first: it fails, naming the conflict, when a host route other
than the default covers one of them or a package source resolves to it (the registry mirror of these
machines lives in 203.0.113.0/24 too).

Run as a script (`python netns.py serve DIR`) it is the internet's server process.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import datetime as dt
import http.client
import ipaddress
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
PREFIX = "egw"
UPLINK_HOST = "198.51.100.1"
UPLINK_INET = "198.51.100.2"
# A metadata service the appliance host itself can reach (as on a cloud VM): sandboxes must not.
METADATA = "169.254.169.254"

# Test names -> the internet address that serves them (all by the same server process).
INTERNET_HOSTS = {
    "pypi.org": "203.0.113.10",
    "files.pythonhosted.org": "203.0.113.10",
    "a.example.com": "203.0.113.11",
    "example.com": "203.0.113.13",
    "example.com.evil.net": "203.0.113.12",
    "evil.example": "203.0.113.66",
    "api.anthropic.com": "203.0.113.20",
}
# Names only the internet's DNS server knows (to test forwarding through the resolver).
INTERNET_DNS = {"b.example.com": "203.0.113.11"}
# What the model API stand-in answers (served for any host; the proxy meters only credentialed ones)
MODEL_REPLIES = {
    "/v1/messages-usage-sse": ("text/event-stream", (
        'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5",'
        '"usage":{"input_tokens":321,"output_tokens":1,"cache_read_input_tokens":4000,'
        '"cache_creation_input_tokens":50}}}\n\n'
        'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta",'
        '"text":"hello"}}\n\n'
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        '"usage":{"output_tokens":99}}\n\n'
        'event: message_stop\ndata: {"type":"message_stop"}\n\n').encode()),
    "/v1/responses-usage-json": ("application/json", (
        '{"object":"response","model":"gpt-5-codex","usage":{"input_tokens":1000,'
        '"input_tokens_details":{"cached_tokens":600},"output_tokens":42}}').encode()),
}
# Names pointing at places a sandbox must never reach (DNS rebinding attempts).
REBOUND_HOSTS = {"metadata.example.com": "169.254.169.254", "loopback.example.com": "127.0.0.1"}

# Names the host itself fetches packages from (scripts/setup, image builds): a test route must never
# take their addresses into a test namespace, or the host loses its packages while the route exists.
PACKAGE_SOURCES = ("deb.debian.org", "registry.npmjs.org", "pypi.org", "files.pythonhosted.org")

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _pdeathsig():
    _libc.prctl(1, signal.SIGTERM)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def poll(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Call `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _enter(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class Netns:
    """A named network namespace and threads that run code inside it."""

    def __init__(self, name: str):
        self.name = name
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, initializer=_enter, initargs=(name,))

    def run(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) on a thread inside this namespace and return its result."""
        return self._pool.submit(fn, *args, **kwargs).result(120)

    def submit(self, fn, *args, **kwargs) -> concurrent.futures.Future:
        return self._pool.submit(fn, *args, **kwargs)

    def ip(self, *args: str) -> str:
        return sh("ip", "-n", self.name, *args).stdout

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], preexec_fn=_pdeathsig, **kw)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        sh("ip", "netns", "del", self.name, check=False)


def sweep() -> None:
    """Remove namespaces left by earlier runs whose process is gone."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) >= 3 and parts[0] == PREFIX and parts[1].isdigit():
            if not Path(f"/proc/{parts[1]}").exists():
                sh("ip", "netns", "del", name, check=False)


# --- routes in the namespace the tests run in --------------------------------------------------------


class RouteConflict(RuntimeError):
    """A test address the host already routes somewhere, or where its package sources live."""


def host_routes() -> list[dict]:
    """The host's IPv4 routes, every table (`ip -j route show table all`)."""
    return json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]")


def apt_source_hosts(paths=None) -> set[str]:
    """Host names in the host's apt sources (`URIs:` of .sources files, `deb URL` lines of .list files)."""
    if paths is None:
        d = Path("/etc/apt/sources.list.d")
        paths = [Path("/etc/apt/sources.list"), *sorted(d.glob("*.list")), *sorted(d.glob("*.sources"))]
    hosts = set()
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0]
            for url in re.findall(r"\b(?:https?|ftp)://([^/\s:]+)", line):
                hosts.add(url.lower())
    return hosts


def package_source_addresses(names=None) -> dict[str, str]:
    """address -> the package source names that resolve to it on this host (/etc/hosts or DNS)."""
    if names is None:
        names = set(PACKAGE_SOURCES) | apt_source_hosts()
    found: dict[str, list[str]] = {}
    for name in sorted(names):
        try:
            infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:  # not resolvable here: no route of ours can take it away
            continue
        for address in sorted({info[4][0] for info in infos}):
            found.setdefault(address, []).append(name)
    return {address: ", ".join(names) for address, names in found.items()}


def _describe(route: dict) -> str:
    words = [route.get("type", ""), route["dst"]]
    words += [f"via {route['gateway']}"] if route.get("gateway") else []
    words += [f"dev {route['dev']}"] if route.get("dev") else []
    words += [f"table {route['table']}"] if route.get("table") else []
    return " ".join(w for w in words if w and w != "unicast")


def check_test_routes(addresses, *, routes: list[dict] | None = None,
                      package_addresses: dict[str, str] | None = None) -> None:  # fmt: skip
    """Before a test adds root-namespace routes for `addresses`: RouteConflict, naming the conflict,
    when an existing route other than the default already covers one of them (the test's route would
    take that traffic away, or not be used) or when one is where a package source resolves here.

    `routes` (rows as `ip -j route` prints them) and `package_addresses` default to this host's."""
    routes = host_routes() if routes is None else routes
    package_addresses = package_source_addresses() if package_addresses is None else package_addresses
    problems = []
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if address in package_addresses:
            problems.append(f"{address} is where the package source {package_addresses[address]} resolves on this "
                            "host: a test route to it would cut the host off from its packages")
        for route in routes:
            dst = route.get("dst", "")
            if dst == "default" or ":" in dst:
                continue
            if ip in ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False):
                problems.append(f"{address} is covered by the host's route '{_describe(route)}': a test route "
                                "would take that traffic away from it")
    if problems:
        raise RouteConflict("test addresses clash with this host's routes:\n  " + "\n  ".join(problems)
                            + "\npick test addresses no route but the default covers (ip route get ADDRESS)")


# --- test PKI -------------------------------------------------------------------------------------


def make_test_pki(directory: Path, names: list[str], ips: list[str]) -> tuple[Path, Path, Path]:
    """A CA and one server certificate for every name/IP. Returns (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test internet CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_pem, cert_pem, key_pem


# --- the world ------------------------------------------------------------------------------------


class Sandbox:
    def __init__(self, world: World, index: int):
        self.world = world
        self.index = index
        self.ns = Netns(f"{world.name}-sb{index}")
        self.tap = f"{world.tap_prefix}{index}"
        self.address = str(world.network.network_address + 10 + index)
        world.host.ip("link", "add", self.tap, "type", "veth", "peer", "name", "eth0", "netns", self.ns.name)
        world.host.ip("link", "set", self.tap, "master", world.bridge, "up")
        self.ns.ip("addr", "add", f"{self.address}/{world.network.prefixlen}", "dev", "eth0")
        self.ns.ip("link", "set", "eth0", "up")
        self.ns.ip("route", "add", "default", "via", world.gateway)

    def run(self, fn, *args, **kwargs):
        return self.ns.run(fn, *args, **kwargs)

    @property
    def mac(self) -> str:
        """The MAC its frames carry (what a guest's NIC has; the veth's host end is its "tap")."""
        return json.loads(self.ns.ip("-j", "link", "show", "eth0"))[0]["address"]

    def pin_gateway(self) -> None:
        """A permanent neighbour entry for the gateway: no ARP needed before sending."""
        mac = self.world.host.ip("-o", "link", "show", self.world.bridge).split("link/ether ")[1].split()[0]
        self.ns.ip("neigh", "replace", self.world.gateway, "lladdr", mac, "dev", "eth0", "nud", "permanent")

    def close(self):
        self.ns.close()


class World:
    def __init__(self, workdir: Path):
        sweep()
        self.workdir = Path(workdir)
        self.tag = f"{random.randrange(16**4):04x}"
        self.name = f"{PREFIX}-{os.getpid()}-{self.tag}"
        self.octet = random.randrange(1, 255)
        self.network = ipaddress.IPv4Network(f"10.250.{self.octet}.0/24")
        self.gateway = str(self.network.network_address + 1)
        self.bridge = f"egb{self.tag}"
        self.tap_prefix = f"eg{self.tag}"  # 6 characters, the config's limit
        self.table = f"appl_test_{self.tag}"
        self.sandboxes: list[Sandbox] = []
        self.host: Netns | None = None
        self.inet: Netns | None = None
        self.server: subprocess.Popen | None = None
        self.server_dir = self.workdir / "internet"
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        self.host = Netns(f"{self.name}-host")
        self.inet = Netns(f"{self.name}-inet")
        h, i = self.host, self.inet
        # A fixed MAC: otherwise a bridge takes its lowest port's MAC, and it changes as taps come
        # and go, leaving sandboxes' ARP entries pointing at a port (where frames are dropped).
        h.ip("link", "add", self.bridge, "address", f"02:00:0a:fa:{self.octet:02x}:01", "type", "bridge")
        h.ip("addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge)
        h.ip("link", "set", self.bridge, "up")
        h.ip("link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", i.name)
        h.ip("addr", "add", f"{UPLINK_HOST}/24", "dev", "uplink")
        h.ip("link", "set", "uplink", "up")
        i.ip("addr", "add", f"{UPLINK_INET}/24", "dev", "eth0")
        for addr in sorted(set(INTERNET_HOSTS.values()) | set(INTERNET_DNS.values())):
            i.ip("addr", "add", f"{addr}/32", "dev", "eth0")
        i.ip("addr", "add", f"{METADATA}/32", "dev", "eth0")
        i.ip("link", "set", "eth0", "up")
        h.ip("route", "add", "203.0.113.0/24", "via", UPLINK_INET)
        h.ip("route", "add", f"{METADATA}/32", "via", UPLINK_INET)
        sh("ip", "netns", "exec", h.name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # As on a stock Debian host (no br_netfilter): bridged frames skip the inet hooks, so the
        # bridge table alone must keep sandboxes apart.
        sh("ip", "netns", "exec", h.name, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0", check=False)
        names = sorted(set(INTERNET_HOSTS) | set(INTERNET_DNS))
        ips = sorted(set(INTERNET_HOSTS.values()) | set(INTERNET_DNS.values()))
        self.ca, cert, key = make_test_pki(self.workdir / "pki", names, ips)
        self.server_dir.mkdir(parents=True, exist_ok=True)
        (self.server_dir / "config.json").write_text(
            json.dumps({"cert": str(cert), "key": str(key), "dns": INTERNET_DNS})
        )
        self.server = i.popen(
            [sys.executable, str(Path(__file__).resolve()), "serve", str(self.server_dir)],
            stdout=open(self.server_dir / "server.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        poll(lambda: (self.server_dir / "ready").exists() or self.server.poll() is not None, what="internet server")
        if self.server.poll() is not None:
            raise RuntimeError("internet server died: " + (self.server_dir / "server.log").read_text())

    def static_hosts(self) -> str:
        return "; ".join(f"{ip} {name}" for name, ip in {**INTERNET_HOSTS, **REBOUND_HOSTS}.items())

    def add_sandbox(self) -> Sandbox:
        sb = Sandbox(self, len(self.sandboxes) + 1)
        self.sandboxes.append(sb)
        return sb

    def requests(self) -> list[dict]:
        """Every request the internet's HTTP(S) servers received, in order."""
        path = self.server_dir / "requests.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if "method" in r]

    def dns_log(self) -> list[str]:
        """Names the internet's DNS server was asked for."""
        path = self.server_dir / "requests.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        return [r["dns"] for r in rows if "dns" in r]

    def close(self):
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(5)
            except subprocess.TimeoutExpired:
                self.server.kill()
        for sb in self.sandboxes:
            sb.close()
        for ns in (self.host, self.inet):
            if ns is not None:
                ns.close()


# --- clients (call them through Sandbox.run) ------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Reply({self.status}, {self.body[:200]!r})"


def _read(conn_sock: socket.socket, method: str = "GET") -> Reply:
    resp = http.client.HTTPResponse(conn_sock, method=method)
    resp.begin()
    body = resp.read()
    return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)


def _request_bytes(method: str, target: str, host: str, headers: dict | None, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_via_proxy(proxy: tuple[str, int], url: str, *, host: str | None = None, method: str = "GET",
                   headers: dict | None = None, timeout: float = 10.0) -> Reply:  # fmt: skip
    """Plain HTTP through the explicit proxy (absolute-form request)."""
    from urllib.parse import urlsplit

    with socket.create_connection(proxy, timeout=timeout) as s:
        s.sendall(_request_bytes(method, url, host or urlsplit(url).netloc, headers))
        return _read(s, method)


def connect_tunnel(proxy: tuple[str, int], target: str, timeout: float = 10.0) -> tuple[socket.socket, Reply | None]:
    """Open a CONNECT tunnel; (socket, None) when established, (socket, refusal reply) otherwise."""
    s = socket.create_connection(proxy, timeout=timeout)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    resp = http.client.HTTPResponse(s, method="CONNECT")
    resp.begin()
    if resp.status == 200:
        return s, None
    body = resp.read()
    return s, Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)


def tls_request(sock: socket.socket, sni: str | None, cafile: str | list[str], path: str = "/", *,
                host: str | None = None, method: str = "GET", headers: dict | None = None,
                body: bytes = b"") -> Reply:  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for f in [cafile] if isinstance(cafile, str) else cafile:
        ctx.load_verify_locations(f)
    if sni is None:
        ctx.check_hostname = False
    with ctx.wrap_socket(sock, server_hostname=sni) as t:
        t.sendall(_request_bytes(method, path, host or sni or "", headers, body))
        return _read(t, method)


def https_via_proxy(proxy, host: str, cafile, path: str = "/", *, port: int = 443, sni: str | None = None,
                    **kw) -> Reply:  # fmt: skip
    """HTTPS through the explicit proxy: CONNECT host:port, then TLS with `sni` (default: host)."""
    s, refused = connect_tunnel(proxy, f"{host}:{port}")
    if refused is not None:
        s.close()
        return refused
    return tls_request(s, sni or host, cafile, path, host=kw.pop("host_header", None) or host, **kw)


def http_direct(ip: str, port: int, host: str, path: str = "/", *, timeout: float = 10.0, **kw) -> Reply:
    """Plain HTTP straight at an address (the transparent proxy catches port 80)."""
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(_request_bytes(kw.pop("method", "GET"), path, host, kw.pop("headers", None)))
        return _read(s)


def https_direct(ip: str, port: int, sni: str | None, cafile, path: str = "/", *, timeout: float = 10.0, **kw) -> Reply:
    s = socket.create_connection((ip, port), timeout=timeout)
    return tls_request(s, sni, cafile, path, **kw)


def tcp_refused(ip: str, port: int, timeout: float = 1.0) -> str | None:
    """None if a TCP connection opens; else how it failed ('refused', 'unreachable', 'timeout')."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return f"unreachable ({e.strerror})"


def dns_query(server: str, name: str, rdtype: str = "A", *, tcp: bool = False, timeout: float = 5.0):
    """(rcode text, [addresses]) from `server`."""
    import dns.message
    import dns.query
    import dns.rcode

    q = dns.message.make_query(name, rdtype)
    r = (dns.query.tcp if tcp else dns.query.udp)(q, server, timeout=timeout)
    addrs = [rr.address for rrset in r.answer for rr in rrset if hasattr(rr, "address")]
    return dns.rcode.to_text(r.rcode()), addrs


# --- the internet's server process ----------------------------------------------------------------


def serve(directory: str) -> None:  # pragma: no cover - runs in its own process
    import http.server

    import dns.message
    import dns.rcode
    import dns.rrset

    d = Path(directory)
    cfg = json.loads((d / "config.json").read_text())
    log_lock = threading.Lock()
    log_file = open(d / "requests.jsonl", "a")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cfg["cert"], cfg["key"])

    def sni_cb(sslsock, servername, _ctx):
        sslsock.recorded_sni = servername

    ctx.sni_callback = sni_cb

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            local = self.connection.getsockname()
            record = {
                "server_ip": local[0],
                "port": local[1],
                "tls": isinstance(self.connection, ssl.SSLSocket),
                "sni": getattr(self.connection, "recorded_sni", None),
                "method": self.command,
                "path": self.path,
                "host": self.headers.get("Host"),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_len": len(body),
            }
            with log_lock:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if self.path in MODEL_REPLIES:  # a stand-in of the model API's answers, with their usage
                content_type, data = MODEL_REPLIES[self.path]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if self.path.startswith("/bytes/"):
                n = int(self.path.split("/")[2])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(n))
                self.end_headers()
                chunk = b"\0" * (1 << 20)
                while n > 0:
                    self.wfile.write(chunk[: min(n, len(chunk))])
                    n -= len(chunk)
                return
            reply = {k: record[k] for k in ("server_ip", "port", "tls", "sni", "method", "path", "host")}
            reply["header_names"] = sorted(record["headers"])  # names only: values never echoed
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        tls = False

        def finish_request(self, request, client_address):
            if self.tls:
                try:
                    request = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
            super().finish_request(request, client_address)

    servers = []
    for port, tls in ((80, False), (443, True), (8443, True), (8080, False)):
        srv = Server(("0.0.0.0", port), Handler)
        srv.tls = tls
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    zone = cfg["dns"]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 53))

    def dns_loop():
        while True:
            data, peer = udp.recvfrom(4096)
            try:
                q = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001
                continue
            r = dns.message.make_response(q)
            name = q.question[0].name.to_text(omit_final_dot=True).lower()
            if name in zone and q.question[0].rdtype == 1:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", zone[name]))
            elif name not in zone:
                r.set_rcode(dns.rcode.NXDOMAIN)
            with log_lock:
                log_file.write(json.dumps({"dns": name, "from": peer[0]}) + "\n")
                log_file.flush()
            udp.sendto(r.to_wire(), peer)

    threading.Thread(target=dns_loop, daemon=True).start()
    (d / "ready").write_text("ok")
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve(sys.argv[2])
