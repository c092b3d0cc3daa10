"""The console under load (part of `scripts/bench console`): many websockets at once.

N event followers (the console's `/ws/sessions/<id>/events`, signed in with a cookie) and M
terminal sessions (`/api/v1/sessions/<id>/terminal` with a bearer token; the guest's shell is an
in-process echo, so the figure is the web server's, not SSH's) against 127.0.0.1:

1. every client connects (followers first, then terminals);
2. the server emits E events, one every few milliseconds, while each terminal types L lines and
   waits for each echo;
3. each follower must receive all E events; each terminal all L echoes.

Errors (a refused or dropped connection, a missing event or echo, the deadline passing) are counted,
never hidden. The server runs in its own process (the daemon's shape: clients are elsewhere), once
as the appliance serves it (gunicorn gthread, TLS) and once on Werkzeug's development server
(threaded, plain HTTP) as the baseline of the same run.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import ssl
import threading
import time
from pathlib import Path

DEADLINE = 120.0  # seconds for one whole run (connect + traffic); what is not done by then is an error


class EchoChannel:
    """A shell that echoes what it is typed (the terminal route's side of SSH)."""

    def __init__(self):
        self.out: queue.Queue = queue.Queue()
        self.closed = False

    def get_pty(self, **kw):
        pass

    def invoke_shell(self):
        pass

    def resize_pty(self, **kw):
        pass

    def sendall(self, data):
        self.out.put(bytes(data))

    def recv(self, n):
        while not self.closed:
            try:
                return self.out.get(timeout=0.5)
            except queue.Empty:
                continue
        return b""

    def recv_exit_status(self):
        return 0

    def close(self):
        self.closed = True


class EchoGuest:
    def __init__(self):
        self.transport = self

    def open_session(self):
        return EchoChannel()

    def connect(self):
        pass

    def close(self):
        pass


class EchoSandboxes:
    def ssh(self, sandbox):
        return EchoGuest()


def _serve(kind: str, state: str, tls_pair: tuple[str, str], threads: int, ready: multiprocessing.Queue) -> None:
    """The server process: the app with a bench-only route that emits events into the session."""
    import dataclasses
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from flask import request

    from appliance.db import open_database
    from appliance.services import Services
    from appliance.sessions.service import SessionService
    from appliance.sessions.stream import emit
    from webui import create_app

    from helpers import make_config

    cfg = make_config(Path(state))
    if kind == "gunicorn":
        cfg = dataclasses.replace(cfg, tls_cert=tls_pair[0], tls_key=tls_pair[1])
    open_database(cfg.database_url)
    app = create_app(Services.build(cfg, SessionService(cfg, sandboxes=EchoSandboxes())))

    @app.post("/bench/emit/<session_id>")
    def bench_emit(session_id):
        count, gap = int(request.args["n"]), float(request.args["gap"])

        def produce():
            for i in range(count):
                emit(session_id, "log", {"stream": "agent", "text": f"line {i}", "t": time.time()})
                time.sleep(gap)

        threading.Thread(target=produce, daemon=True).start()
        return {"ok": True}

    if kind == "gunicorn":
        from appliance.webserver import WebServer

        server = WebServer(app, "127.0.0.1", 0, cfg.tls_cert, cfg.tls_key, threads=threads)
        ready.put(server.port)
        server.serve_forever()
    else:
        import logging

        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise here

        server = make_server("127.0.0.1", 0, app, threaded=True)
        ready.put(server.server_port)
        server.serve_forever()


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 1)


def run(kind: str, state: Path, tls_pair: tuple[str, str], cookie: str, token: str, session_id: str,
        followers: int, terminals: int, events: int, lines: int, threads: int) -> dict:
    import peewee
    import simple_websocket

    from appliance.db import database
    from appliance.sessions.models import Event

    with database.connection_context():  # follow from here: earlier runs' events are not this run's
        after = Event.select(peewee.fn.MAX(Event.id)).where(Event.session == session_id).scalar() or 0
    ctx = multiprocessing.get_context("fork")
    ready: multiprocessing.Queue = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(kind, str(state), tls_pair, threads, ready), daemon=True)
    proc.start()
    try:
        port = ready.get(timeout=60)
        scheme = "https" if kind == "gunicorn" else "http"
        ssl_ctx = ssl.create_default_context(cafile=tls_pair[0]) if kind == "gunicorn" else None
        ws_base = f"{'wss' if ssl_ctx else 'ws'}://127.0.0.1:{port}"
        errors: list[str] = []
        connect_times: list[float] = []
        delivery: list[float] = []
        echo_rtt: list[float] = []
        lock = threading.Lock()
        start_traffic = threading.Event()
        deadline = time.monotonic() + DEADLINE

        def fail(what: str) -> None:
            with lock:
                errors.append(what)

        def follower(i: int) -> None:
            try:
                t = time.perf_counter()
                ws = simple_websocket.Client.connect(f"{ws_base}/ws/sessions/{session_id}/events?after={after}",
                                                     headers={"Cookie": cookie}, ssl_context=ssl_ctx)
                with lock:
                    connect_times.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 - counted: a refused handshake is an error of the run
                fail(f"follower connect: {type(e).__name__}: {e}")
                return
            got = 0
            try:
                while got < events and time.monotonic() < deadline:
                    msg = ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                    if msg is None:
                        break
                    ev = json.loads(msg)
                    if ev.get("kind") == "log":
                        got += 1
                        with lock:
                            delivery.append(time.time() - ev["data"]["t"])
            except Exception as e:  # noqa: BLE001 - any failure is counted as an error of the run
                fail(f"follower receive: {type(e).__name__}: {e}")
            finally:
                ws.close()
            if got < events:
                fail(f"follower {i}: {got}/{events} events")

        def terminal(i: int) -> None:
            try:
                t = time.perf_counter()
                ws = simple_websocket.Client.connect(f"{ws_base}/api/v1/sessions/{session_id}/terminal",
                                                     headers={"Authorization": f"Bearer {token}"},
                                                     ssl_context=ssl_ctx)
                with lock:
                    connect_times.append(time.perf_counter() - t)
                ws.send(json.dumps({"resize": [80, 24]}))
            except Exception as e:  # noqa: BLE001 - any failure is counted as an error of the run
                fail(f"terminal connect: {type(e).__name__}: {e}")
                return
            start_traffic.wait(DEADLINE)
            done = 0
            try:
                for n in range(lines):
                    line = f"echo {i} {n}\n".encode()
                    t = time.perf_counter()
                    ws.send(line)
                    buf = b""
                    while line not in buf and time.monotonic() < deadline:
                        msg = ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                        if msg is None:
                            break
                        if isinstance(msg, bytes):
                            buf += msg
                    if line not in buf:
                        break
                    done += 1
                    with lock:
                        echo_rtt.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 - any failure is counted as an error of the run
                fail(f"terminal: {type(e).__name__}: {e}")
            finally:
                ws.close()
            if done < lines:
                fail(f"terminal {i}: {done}/{lines} echoes")

        began = time.perf_counter()
        workers = [threading.Thread(target=follower, args=(i,), daemon=True) for i in range(followers)]
        workers += [threading.Thread(target=terminal, args=(i,), daemon=True) for i in range(terminals)]
        for w in workers:
            w.start()
        # traffic starts once everyone had the chance to connect (bounded by the deadline)
        while len(connect_times) + len(errors) < followers + terminals and time.monotonic() < deadline:
            time.sleep(0.05)
        connected_at = time.perf_counter()
        import urllib.request

        req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/bench/emit/{session_id}?n={events}&gap=0.02",
                                     method="POST", headers={"Authorization": f"Bearer {token}"})
        urllib.request.urlopen(req, timeout=30, context=ssl_ctx).read()
        start_traffic.set()
        for w in workers:
            w.join(max(0.1, deadline - time.monotonic()))
        if any(w.is_alive() for w in workers):
            fail("deadline passed with clients still running")
        finished = time.perf_counter()
        return {"bench": "console_load", "server": "gunicorn gthread + TLS" if kind == "gunicorn" else
                "werkzeug dev server (baseline)", "followers": followers, "terminals": terminals,
                "events": events, "lines_per_terminal": lines, "errors": len(errors),
                "first_errors": sorted(set(errors))[:3],
                "connect_all_s": round(connected_at - began, 2), "traffic_s": round(finished - connected_at, 2),
                "connect_p50_ms": _pct(connect_times, 0.5), "connect_p95_ms": _pct(connect_times, 0.95),
                "event_delivery_p50_ms": _pct(delivery, 0.5), "event_delivery_p95_ms": _pct(delivery, 0.95),
                "echo_p50_ms": _pct(echo_rtt, 0.5), "echo_p95_ms": _pct(echo_rtt, 0.95),
                "deliveries": len(delivery), "echoes": len(echo_rtt)}
    finally:
        proc.terminate()
        proc.join(10)


def main_load(cfg, user, token: str, session, followers: int, terminals: int, events: int, lines: int,
              threads: int) -> None:
    """Print one JSON line per server. `session` must be the user's, with a running sandbox row."""
    import tempfile

    from appliance import tls
    from webui.console import password_stamp

    with tempfile.TemporaryDirectory() as tmp:
        pair = (str(Path(tmp) / "cert.pem"), str(Path(tmp) / "key.pem"))
        tls.generate_self_signed(Path(pair[0]), Path(pair[1]), ["127.0.0.1", "localhost"])
        cookie = _session_cookie(cfg, user.id, password_stamp(user))
        results = []
        for kind in ("gunicorn", "werkzeug"):
            r = run(kind, cfg.state_dir, pair, cookie, token, session.id, followers, terminals, events, lines,
                    threads)
            results.append(r)
        gun, base = results
        for r in results:
            if r is gun and base["echo_p50_ms"] and gun["echo_p50_ms"]:
                r["echo_p50_ratio_vs_baseline"] = round(gun["echo_p50_ms"] / base["echo_p50_ms"], 2)
            print(json.dumps(r), flush=True)


def _session_cookie(cfg, uid: int, stamp: str) -> str:
    """The console's signed session cookie for a user, as the login page would set it."""
    from appliance.services import Services
    from webui import create_app

    app = create_app(Services.build(cfg))
    with app.test_request_context():
        serializer = app.session_interface.get_signing_serializer(app)
        return f"session={serializer.dumps({'uid': uid, 'pw': stamp})}"
