#!/usr/bin/env python3
"""`scripts/bench egress`: what the egress policy costs, as JSON lines on stdout.

Builds the same namespace world as the integration tests (tests/integration/netns.py: a bridge
with fake sandboxes, an "internet" namespace with HTTP/HTTPS servers) and runs the real service
(nft, mitmdump, resolver) in it. Needs root. Measures, each against a baseline taken in the same
run:

* download throughput of one large HTTPS file through a passthrough CONNECT tunnel vs direct
  (a `full` sandbox forwarded by nft to a port the proxy does not see): MB/s and the ratio;
* per-request latency (new connection, TLS, one small GET): direct, passthrough CONNECT, and an
  intercepted host (credential injection) — p50/p95 and what the proxy adds;
* nft apply time of one sandbox change (attach, detach) with 1, 50 and 200 sandboxes present.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from appliance.db import open_database  # noqa: E402
from appliance_base import config as appconfig  # noqa: E402
from netpolicy.allowlist import Policy  # noqa: E402
from netpolicy.service import CREDENTIAL_PLACEHOLDER, EgressPolicy  # noqa: E402

import netns as N  # noqa: E402


def emit(**fields) -> None:
    print(json.dumps({"bench": "egress", **fields}), flush=True)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def _tls(sock: socket.socket, sni: str, cafiles: list[str]) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for f in cafiles:
        ctx.load_verify_locations(f)
    return ctx.wrap_socket(sock, server_hostname=sni)


def _connect(proxy, host: str, port: int, timeout: float = 30.0) -> socket.socket:
    s = socket.create_connection(proxy, timeout=timeout)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("proxy closed the connection")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise OSError(f"CONNECT refused: {head[:80]!r}")
    return s


def _open(path: str, host: str, cafiles: list[str], proxy=None, direct=None, port=443) -> ssl.SSLSocket:
    raw = _connect(proxy, host, port) if proxy else socket.create_connection(direct, timeout=30)
    return _tls(raw, host, cafiles)


def _get(t: ssl.SSLSocket, host: str, path: str, headers: dict | None = None) -> int:
    """Send one GET, read the whole body, return its length."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    t.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n".encode())
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    head = b""
    while b"\r\n\r\n" not in head:
        n = t.recv_into(buf)
        if not n:
            raise OSError("closed before headers")
        head += bytes(view[:n])
    header, _, rest = head.partition(b"\r\n\r\n")
    if not header.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected reply {header[:60]!r}")
    length = int(next(line.split(b":")[1] for line in header.split(b"\r\n") if line.lower().startswith(b"content-length")))
    got = len(rest)
    while got < length:
        n = t.recv_into(buf)
        if not n:
            raise OSError("closed early")
        got += n
    return got


def bench_throughput(world, sb_full, sb_limited, proxy, size_mb: int) -> None:
    path = f"/bytes/{size_mb << 20}"
    ip = N.INTERNET_HOSTS["pypi.org"]
    ca = [str(world.ca)]

    def run(kind: str) -> float:
        def go():
            t0 = time.perf_counter()
            if kind == "passthrough_connect":
                t = _open(path, "pypi.org", ca, proxy=proxy)
            else:
                t = _open(path, "pypi.org", ca, direct=(ip, 8443))
            with t:
                n = _get(t, "pypi.org", path)
            return n / (time.perf_counter() - t0) / 1e6

        where = {"host": world.host, "direct": sb_full, "passthrough_connect": sb_limited}[kind]
        return where.run(go)

    results = {}
    for kind in ("host", "direct", "passthrough_connect"):
        run(kind)  # warm up (connections, caches)
        results[kind] = statistics.median(run(kind) for _ in range(3))
    # "host": from the appliance host itself, no sandbox hop: what the test network can carry.
    emit(metric="download_throughput", path="host", size_mb=size_mb, mb_per_s=round(results["host"], 1))
    # "direct": a full-level sandbox, forwarded and masqueraded by nft, no proxy.
    emit(metric="download_throughput", path="direct", size_mb=size_mb, mb_per_s=round(results["direct"], 1))
    emit(
        metric="download_throughput",
        path="passthrough_connect",
        size_mb=size_mb,
        mb_per_s=round(results["passthrough_connect"], 1),
        ratio_vs_direct=round(results["passthrough_connect"] / results["direct"], 3),
    )


def bench_latency(world, sb_full, sb_limited, proxy, appliance_ca: str, n: int) -> None:
    ca = [str(world.ca)]
    ip = N.INTERNET_HOSTS["pypi.org"]

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000

    def direct():
        with _open("/", "pypi.org", ca, direct=(ip, 8443)) as t:
            _get(t, "pypi.org", "/latency")

    def passthrough():
        with _open("/", "pypi.org", ca, proxy=proxy) as t:
            _get(t, "pypi.org", "/latency")

    def intercepted():
        with _open("/", "api.anthropic.com", [appliance_ca], proxy=proxy) as t:
            _get(t, "api.anthropic.com", "/latency", {"x-api-key": CREDENTIAL_PLACEHOLDER})

    samples = {}
    for name, fn, sb in (("direct", direct, sb_full), ("passthrough", passthrough, sb_limited),
                         ("intercepted", intercepted, sb_limited)):  # fmt: skip
        sb.run(fn)  # warm up
        samples[name] = sb.run(lambda fn=fn: [timed(fn) for _ in range(n)])
    base50, base95 = pct(samples["direct"], 0.5), pct(samples["direct"], 0.95)
    for name, values in samples.items():
        row = dict(metric="request_latency_ms", path=name, n=n, p50=round(pct(values, 0.5), 2), p95=round(pct(values, 0.95), 2))
        if name != "direct":
            row.update(added_p50=round(row["p50"] - base50, 2), added_p95=round(row["p95"] - base95, 2))
        emit(**row)


def bench_nft(world, svc, counts=(1, 50, 200), repeat: int = 15) -> None:
    net = world.network
    hosts = list(net.hosts())[20:]  # clear of the real sandboxes at .11 and .12
    for count in counts:
        live = [(f"sb-b{i}", str(hosts[i]), f"{world.tap_prefix}b{i}", Policy.make("limited")) for i in range(count)]
        world.host.run(svc.reconcile, live)
        extra = ("sb-extra", str(hosts[count]), f"{world.tap_prefix}x", Policy.make("limited"))
        attach, detach = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            world.host.run(svc.attach, *extra)
            attach.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            world.host.run(svc.detach, extra[0])
            detach.append((time.perf_counter() - t0) * 1000)
        emit(metric="nft_apply_ms", sandboxes_present=count, repeat=repeat,
             attach_p50=round(pct(attach, 0.5), 2), detach_p50=round(pct(detach, 0.5), 2),
             attach_p95=round(pct(attach, 0.95), 2))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100, help="download size (default 100)")
    parser.add_argument("--requests", type=int, default=100, help="requests per latency sample (default 100)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("error: scripts/bench egress needs root (network namespaces, nftables)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-egress-") as tmp:
        tmp = Path(tmp)
        world = N.World(tmp)
        svc = None
        try:
            creds = tmp / "credentials.toml"
            creds.write_text('["api.anthropic.com"]\nx-api-key = "bench-secret"\n')
            creds.chmod(0o600)
            cfg = appconfig.load(
                env={"APPLIANCE_CONFIG": str(tmp / "none.toml")},
                overrides=dict(
                    state_dir=str(tmp / "state"), bridge=world.bridge, subnet=str(world.network),
                    tap_prefix=world.tap_prefix, egress_table=world.table, dns_upstream=f"{N.UPLINK_INET}:53",
                    static_hosts=world.static_hosts(), credentials_file=str(creds), upstream_ca_file=str(world.ca),
                ),
            )  # fmt: skip
            open_database(cfg.database_url)
            svc = EgressPolicy(cfg)
            world.host.run(svc.start)
            sb_limited, sb_full = world.add_sandbox(), world.add_sandbox()
            world.host.run(svc.attach, "sb-limited", sb_limited.address, sb_limited.tap, Policy.make("limited"))
            world.host.run(svc.attach, "sb-full", sb_full.address, sb_full.tap, Policy.make("full"))
            proxy = (world.gateway, cfg.proxy_port)
            appliance_ca = str(svc.confdir / "mitmproxy-ca-cert.pem")
            bench_throughput(world, sb_full, sb_limited, proxy, args.size_mb)
            bench_latency(world, sb_full, sb_limited, proxy, appliance_ca, args.requests)
            bench_nft(world, svc)
        finally:
            if svc is not None:
                world.host.run(svc.stop)
                world.host.run(svc.remove_rules)
            world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
