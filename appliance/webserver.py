"""The production web server: gunicorn's threaded worker (gthread), run inside the daemon's process.

Why gthread: flask-sock's websockets (live events, terminal) work on gunicorn only with a worker
that hands each connection a real thread (simple-websocket takes over `gunicorn.socket`); an open
websocket holds one thread of the pool, hence `web_threads`.

Why inside the daemon and without gunicorn's arbiter: the arbiter forks its workers, and this
process holds threads (session engine, scheduler, resolver, proxy supervisor) and libvirt
connections that must not be forked; the web side also calls the engine directly (a new turn or a
cancel wakes its dispatcher at once). So one `ThreadWorker` runs its event loop in a thread of this
process: gunicorn's HTTP parser, keep-alive, TLS and thread pool, none of its process management
(systemd restarts the whole daemon instead). See docs/ARCHITECTURE.md, "Web server".
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent import futures
from urllib.parse import quote

from gunicorn.config import Config as GunicornConfig
from gunicorn.glogging import Logger
from gunicorn.sock import create_sockets
from gunicorn.workers.gthread import ThreadWorker

from . import tls

log = logging.getLogger(__name__)


class _DaemonThreadPool:
    """The worker's thread pool (gthread's documented `get_thread_pool` hook), with daemon threads.

    ThreadPoolExecutor joins its threads at interpreter exit, and a websocket handler (an event
    follower waits for the next event for ever) would then hold the daemon's exit until systemd
    kills it. Same scheduling as ThreadPoolExecutor: a new thread only when none is idle."""

    def __init__(self, max_workers: int, name: str):
        self._max, self._name = max_workers, name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def submit(self, fn, *args, **kwargs) -> futures.Future:
        future: futures.Future = futures.Future()
        self._queue.put((future, fn, args, kwargs))
        with self._lock:
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max:
                t = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
        return future

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as e:  # noqa: BLE001 - handed to the worker's callback, like ThreadPoolExecutor
                    future.set_exception(e)
            self._idle.release()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        for _ in self._threads:
            self._queue.put(None)  # idle threads end; busy ones end with their connection or the process


class _EmbeddedWorker(ThreadWorker):
    """A gthread worker whose loop runs in a thread of this process instead of a forked child."""

    def get_thread_pool(self):
        return _DaemonThreadPool(self.cfg.threads, self.cfg.proc_name)

    def init_signals(self):  # signals belong to the daemon's main thread
        pass

    def is_parent_alive(self):  # there is no arbiter to outlive
        return True

    def notify(self):  # nobody watches the heartbeat file
        pass


class _App:
    """What a gunicorn worker loads its WSGI callable from."""

    def __init__(self, wsgi):
        self._wsgi = wsgi

    def wsgi(self):
        return self._wsgi


class WebServer:
    """Serve a WSGI app on host:port (port 0: any free one), over TLS when cert and key are given."""

    def __init__(self, app, host: str, port: int, tls_cert: str = "", tls_key: str = "", threads: int = 512,
                 name: str = "web"):
        if tls_cert:
            tls.server_context(tls_cert, tls_key)  # a clear error now rather than on the first client
        cfg = GunicornConfig()
        settings = {
            "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
            "worker_class": "gthread",
            "threads": threads,
            "worker_connections": max(1000, threads * 2),
            "keepalive": 5,
            "graceful_timeout": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "certfile": tls_cert or None,
            "keyfile": tls_key or None,
            "proc_name": f"appliance-{name}",
        }
        if "http_protocols" in cfg.settings:  # gunicorn >= 24 can speak HTTP/2; websockets upgrade HTTP/1.1
            settings["http_protocols"] = "h1"
        for key, value in settings.items():
            cfg.set(key, value)
        self.tls = bool(tls_cert)
        self.host = host
        self._log = Logger(cfg)
        self._sockets = create_sockets(cfg, self._log)
        self.port = self._sockets[0].sock.getsockname()[1]
        self._worker = _EmbeddedWorker(0, 0, self._sockets, _App(app), 30, cfg, self._log)
        self._thread: threading.Thread | None = None
        self._name = name

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self._worker.init_process, name=self._name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Run in the calling thread until shutdown() (from another thread)."""
        self._worker.init_process()

    def shutdown(self, wait: float = 10.0) -> None:
        self._worker.handle_exit(None, None)  # stop accepting; in-flight requests get graceful_timeout
        if self._thread is not None:
            self._thread.join(wait)


def redirect_app(https_port: int):
    """A WSGI app that sends every plain-HTTP request to the same host and path over HTTPS."""

    def app(environ, start_response):
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "localhost")
        if host.startswith("["):
            name = host[:host.index("]") + 1]
        else:
            name = host.rsplit(":", 1)[0]
        path = quote(environ.get("PATH_INFO", "/"), safe="/;=@:!$&'()*+,-._~")
        query = environ.get("QUERY_STRING", "")
        location = f"https://{name}{'' if https_port == 443 else f':{https_port}'}{path}{'?' + query if query else ''}"
        body = f"HTTPS only: {location}\n".encode()
        start_response("308 Permanent Redirect", [("Location", location), ("Content-Type", "text/plain"),
                                                  ("Content-Length", str(len(body)))])
        return [body]

    return app
