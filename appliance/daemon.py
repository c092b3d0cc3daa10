"""The long-running appliance: reconcile at start, keep reconciling, serve HTTP.

Started by `appliance serve` (systemd unit, `scripts/run`). Everything it knows is in the database
and in libvirt, so it can be killed at any point and started again.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from netpolicy import bridge
from netpolicy.service import EgressPolicy

from .config import Config
from .db import open_database
from .sandbox.hypervisor import Hypervisor
from .sandbox.manager import SandboxManager
from .webserver import WebServer, redirect_app

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        self.db = open_database(config.database_url)
        self.hypervisor = Hypervisor(config.libvirt_uri)
        self.egress = EgressPolicy(config)
        self.sandboxes = SandboxManager(config, self.hypervisor, egress=self.egress)
        from .sessions.engine import Engine

        self.engine = Engine(config, self.sandboxes, has_credential=self.egress.has_credential)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._stop = threading.Event()
        self._server: WebServer | None = None
        self._redirect: WebServer | None = None

    def reconcile(self) -> None:
        with self.db.connection_context():
            self.sandboxes.reconcile()

    def start(self) -> None:
        cfg = self.config
        bridge.ensure_bridge(cfg.bridge, ipaddress.IPv4Interface(f"{cfg.bridge_address}/{cfg.network.prefixlen}"))
        # Egress first (tables rebuilt with the gate closed, then resolver and proxy), so no guest
        # found running by reconcile is ever on the bridge unpoliced.
        self.egress.start()
        self.reconcile()
        self.engine.start()  # interrupted turns are marked, queued ones run again
        self.scheduler.add_job(self._reconcile_job, "interval", seconds=cfg.reconcile_interval,
                               id="reconcile", max_instances=1, coalesce=True)
        self.scheduler.add_job(self._expire_job, "interval", seconds=max(5.0, min(60.0, cfg.idle_guest_timeout / 2)),
                               id="expire-idle", max_instances=1, coalesce=True)
        self.scheduler.start()
        from webui import create_app

        app = create_app(cfg, sessions=self.engine.service, pull_requests=self.engine.create_pull_request,
                         test_config={"SANDBOXES": self.sandboxes})
        self._server = WebServer(app, cfg.listen_host, cfg.listen_port, cfg.tls_cert, cfg.tls_key, cfg.web_threads)
        if cfg.tls_cert and cfg.http_redirect_port:
            self._redirect = WebServer(redirect_app(self._server.port), cfg.listen_host, cfg.http_redirect_port,
                                       threads=4, name="http-redirect").start()
        log.info("appliance listening on %s", self._server.url)

    def _reconcile_job(self) -> None:
        try:
            self.reconcile()
        except Exception:  # a failed pass is retried at the next interval
            log.exception("periodic reconcile failed")

    def _expire_job(self) -> None:
        try:
            with self.db.connection_context():
                self.engine.expire_idle()
        except Exception:
            log.exception("idle expiry failed")

    @property
    def url(self) -> str:
        return self._server.url

    def serve_forever(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self._server.shutdown).start())
        try:
            self._server.serve_forever()
        finally:
            if self._redirect is not None:
                self._redirect.shutdown()
            self.scheduler.shutdown(wait=False)
            self.engine.stop()
            self.egress.stop()  # the gate closes: guests keep running, isolated, until the next start
            self.hypervisor.close()
            log.info("appliance stopped")
