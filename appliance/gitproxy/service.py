"""Run the git proxy on a host:port in a background thread (the daemon, and tests)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from werkzeug.serving import WSGIRequestHandler, make_server

from .mirror import MirrorStore
from .repos import RepoSpec
from .server import GitProxy, guest_remote, remote_url

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler, logging through `appliance.gitproxy.access` at DEBUG (no per-request
    INFO line on the daemon's console; the proxy logs its own decisions)."""

    def log(self, type: str, message: str, *args) -> None:
        logging.getLogger("appliance.gitproxy.access").debug(
            "%s %s", self.address_string(), message % args)


class GitProxyService:
    """A threaded HTTP server for `app`. `port=0` picks a free port (see `.port` after start)."""

    def __init__(self, app: GitProxy, host: str, port: int):
        self.app, self.host, self.requested_port = app, host, port
        self._server = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, cfg, resolve_repo: Callable[[str], RepoSpec | None], host: str | None = None,
                    port: int | None = None, **proxy_options) -> GitProxyService:
        """Bound to the bridge address and `git_proxy_port` unless told otherwise."""
        app = GitProxy(MirrorStore.from_config(cfg), resolve_repo,
                       max_push_bytes=cfg.git_max_push_mb * 1024 * 1024, **proxy_options)
        return cls(app, host or str(cfg.bridge_address), cfg.git_proxy_port if port is None else port)

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self.requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def remote_url(self, token: str, repo_key: str) -> str:
        return remote_url(token, repo_key, self.host, self.port)

    def guest_remote(self, token: str, repo_key: str) -> tuple[str, str]:
        return guest_remote(token, repo_key, self.host, self.port)

    def start(self) -> GitProxyService:
        if self._server is not None:
            return self
        mirrors = getattr(self.app, "mirrors", None)
        if mirrors is not None:
            mirrors.cleanup()
        self._server = make_server(self.host, self.requested_port, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="git-proxy", daemon=True)
        self._thread.start()
        log.info("git proxy listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> GitProxyService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
