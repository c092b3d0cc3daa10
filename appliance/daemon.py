"""The long-running appliance: reconcile at start, keep reconciling, serve HTTP.

Started by `appliance serve` (systemd unit, `scripts/run`). Everything it knows is in the database
and in libvirt, so it can be killed at any point and started again.
"""

from __future__ import annotations

import logging
import signal
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from appliance_base.config import Config
from netpolicy.service import EgressPolicy

from . import statedir
from .db import open_database
from .sandbox.hypervisor import Hypervisor
from .sandbox.manager import SandboxManager
from .services import Services
from .webserver import WebServer, redirect_app

log = logging.getLogger(__name__)

TOKEN_RETENTION_DAYS = 30.0  # expired or revoked git proxy tokens are kept this long (audit), then purged
FORGE_REPLY_INTERVAL = 30.0  # seconds between looks for finished auto-fix turns to reply for


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        tightened = statedir.protect(config.state_dir)
        if tightened:
            log.info("state dir %s: made private (others could read them): %s", config.state_dir, ", ".join(tightened))
        self.db = open_database(config.database_url)
        self.hypervisor = Hypervisor(config.libvirt_uri)
        self.egress = EgressPolicy(config)
        self.sandboxes = SandboxManager(config, self.hypervisor, egress=self.egress)
        from .sessions.engine import Engine

        self.control = None
        if config.clustered:  # the control role: turns run on `appliance worker` hosts
            from .cluster.control import ClusterControl

            self.control = ClusterControl(config)
        self.engine = Engine(config, self.sandboxes, has_credential=self.egress.has_credential,
                             admission=self.control and self.control.dispatch_once)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._stop = threading.Event()
        self._server: WebServer | None = None
        self._redirect: WebServer | None = None

    def reconcile(self) -> None:
        with self.db.connection_context():
            # caches first: a dropped one's templates lose their RAM, and the sandboxes' pass then
            # removes their disks once unused
            self.engine.runner.env_caches.sweep()
            self.sandboxes.reconcile()

    def start(self) -> None:
        cfg = self.config
        if self.control is None:  # one server: guests, bridge and egress live here
            self.egress.ensure_bridge()
            # Egress first (tables rebuilt with the gate closed, then resolver and proxy), so no guest
            # found running by reconcile is ever on the bridge unpoliced.
            self.egress.start()
            self.reconcile()
            self.sandboxes.pool.start()  # the warm pool fills in the background (warm_pool; 0: never)
        self.engine.start()  # interrupted turns are marked, queued ones run again (control: admits)
        self.schedule_jobs()
        self.scheduler.start()
        from webui import create_app

        app = create_app(Services.build(cfg, sessions=self.engine.service))
        self._server = WebServer(app, cfg.listen_host, cfg.listen_port, cfg.tls_cert, cfg.tls_key, cfg.web_threads)
        if cfg.tls_cert and cfg.http_redirect_port:
            self._redirect = WebServer(redirect_app(self._server.port), cfg.listen_host, cfg.http_redirect_port,
                                       threads=4, name="http-redirect").start()
        log.info("appliance listening on %s", self._server.url)

    def schedule_jobs(self) -> None:
        """The periodic work: reconcile, idle guest expiry, purging old git proxy tokens and the
        sessions archived longer than `archived_session_retention_days` (when set)."""
        cfg = self.config
        if self.control is None:  # worker hosts reconcile their own guests
            self.scheduler.add_job(self._reconcile_job, "interval", seconds=cfg.reconcile_interval,
                                   id="reconcile", max_instances=1, coalesce=True)
            # guests live here (with worker hosts, destroying an idle one is the worker's: not built yet)
            self.scheduler.add_job(self._expire_job, "interval",
                                   seconds=max(5.0, min(60.0, cfg.idle_guest_timeout / 2)),
                                   id="expire-idle", max_instances=1, coalesce=True)
        self.scheduler.add_job(self._purge_tokens_job, "interval", hours=1, id="purge-git-tokens",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(self._purge_archived_job, "interval", hours=1, id="purge-archived-sessions",
                               max_instances=1, coalesce=True)
        # pull requests: replies after auto-fix turns soon; the forges' state every forge_poll_interval
        self.scheduler.add_job(self._forge_replies_job, "interval", seconds=FORGE_REPLY_INTERVAL, id="forge-replies",
                               max_instances=1, coalesce=True)
        if cfg.forge_poll_interval > 0:
            self.scheduler.add_job(self._forge_poll_job, "interval", seconds=cfg.forge_poll_interval, id="forge-poll",
                                   max_instances=1, coalesce=True)

    def _purge_archived_job(self) -> None:
        from .sessions import removal

        try:
            with self.db.connection_context():
                deleted = removal.purge_archived(self.config, self.sandboxes)
            if deleted:
                log.info("deleted %d sessions archived longer than %g days: %s", len(deleted),
                         self.config.archived_session_retention_days, ", ".join(deleted))
        except Exception:
            log.exception("purging archived sessions failed")

    def _forge_poll_job(self) -> None:
        from .prloop import poller

        try:
            with self.db.connection_context():
                poller.poll(self.engine.service)
        except Exception:
            log.exception("polling the forges failed")

    def _forge_replies_job(self) -> None:
        from .prloop import poller

        try:
            with self.db.connection_context():
                poller.send_replies(self.engine.service)
        except Exception:
            log.exception("replying on review threads failed")

    def _purge_tokens_job(self) -> None:
        from .gitproxy import tokens

        try:
            with self.db.connection_context():
                removed = tokens.purge(TOKEN_RETENTION_DAYS)
            if removed:
                log.info("purged %d expired or revoked git proxy tokens", removed)
        except Exception:
            log.exception("token purge failed")

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
            self.sandboxes.pool.stop()  # its waiting slots stay, paused, for the next start
            if self.control is not None:
                self.control.close()
            else:
                self.egress.stop()  # the gate closes: guests keep running, isolated, until the next start
            self.hypervisor.close()
            log.info("appliance stopped")
