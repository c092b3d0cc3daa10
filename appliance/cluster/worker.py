"""`appliance worker`: one per libvirt host. It registers its host row, heartbeats it, and pulls
turn jobs from its own queue (`host:<id>`: sessions whose guest lives here) and from `any`, at
most `host_capacity` at once. Control admits and routes; the worker only runs (appliance/cluster)."""

from __future__ import annotations

import logging
import threading

import procrastinate

from appliance_base.config import Config

from .. import __version__
from ..db import database, open_database, utcnow
from ..errors import ApplianceError
from ..models import Sandbox
from ..sessions.lifecycle import requeue_if_more
from ..sessions.models import Session, Turn
from .jobs import ANY_QUEUE, RUN_TURN, ensure_schema, host_queue, make_app
from .models import FINISHED_TURNS, Host, TurnAttempt

log = logging.getLogger(__name__)

FULL_RETRY_SECONDS = 1  # a job this host had no room for is offered again after this long


class HostFull(Exception):
    """This host is at capacity or draining: the job goes back to its queue (Procrastinate retry)."""


class Worker:
    def __init__(self, config: Config):
        if not config.clustered:
            raise ApplianceError("`appliance worker` is for more than one host, and cluster_mode is \"off\"",
                                 hint="set cluster_mode = \"on\" and a postgresql:// database_url shared with "
                                      "control, or run `appliance serve` alone for one server")
        self.config = config
        self.host_id = config.this_host
        self.db = open_database(config.database_url)
        ensure_schema(config.database_url)
        self.app = make_app(config.database_url, worker=True)
        full = procrastinate.RetryStrategy(max_attempts=1_000_000, wait=FULL_RETRY_SECONDS,
                                           retry_exceptions={HostFull})
        self.app.task(name=RUN_TURN, pass_context=True, retry=full)(self.run_turn)
        self._stop = threading.Event()
        self.runner = self._make_runner()
        self._slots = threading.Lock()  # the capacity check and taking the slot are one step

    def _make_runner(self):
        if self.config.turn_runner == "dry-run":
            from .dryrun import DryRunRunner

            return DryRunRunner(self.config, self.host_id)
        # turns in real guests on this host's libvirt: the single server's engine, without its dispatcher
        from netpolicy.service import EgressPolicy

        from ..sandbox.hypervisor import Hypervisor
        from ..sandbox.manager import SandboxManager
        from ..sessions.engine import Engine

        self.egress = EgressPolicy(self.config)
        self.egress.ensure_bridge()
        self.egress.start()
        self.sandboxes = SandboxManager(self.config, Hypervisor(self.config.libvirt_uri), egress=self.egress)
        with database.connection_context():
            self.sandboxes.reconcile()  # this host's guests only: the others' rows are theirs
        engine = Engine(self.config, self.sandboxes, has_credential=self.egress.has_credential)
        engine.gitproxy.start()
        self.sandboxes.pool.start()  # this host's warm pool (its own templates)
        threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True).start()
        return engine.runner

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.config.reconcile_interval):
            try:
                with database.connection_context():
                    self.sandboxes.reconcile()
            except Exception:  # the next pass retries
                log.exception("periodic reconcile failed")

    # -- the host row -----------------------------------------------------------------------------
    def register(self) -> None:
        """Upsert this host; attempts it left unfinished when it last died are over (control re-routes
        their jobs, found stalled)."""
        with database.connection_context():
            now = utcnow()
            fields = {"address": self.config.host_address, "capacity": self.config.host_capacity,
                      "version": __version__, "heartbeat": now, "started_at": now}
            if not Host.update(**fields).where(Host.id == self.host_id).execute():
                Host.create(id=self.host_id, **fields)
            TurnAttempt.update(finished_at=now, outcome="host-restarted").where(
                (TurnAttempt.host == self.host_id) & TurnAttempt.finished_at.is_null()).execute()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.config.host_heartbeat_interval):
            try:
                with database.connection_context():
                    Host.update(heartbeat=utcnow()).where(Host.id == self.host_id).execute()
            except Exception:  # the next beat retries; control waits host_stale_after before acting
                log.exception("host heartbeat failed")

    def run(self) -> None:
        self.register()
        threading.Thread(target=self._heartbeat_loop, name="host-heartbeat", daemon=True).start()
        log.info("worker %s pulling turns from %s and %s (capacity %d)", self.host_id, host_queue(self.host_id),
                 ANY_QUEUE, self.config.host_capacity)
        try:
            self.app.run_worker(queues=[host_queue(self.host_id), ANY_QUEUE], concurrency=self.config.host_capacity,
                                name=self.host_id, update_heartbeat_interval=self.config.host_heartbeat_interval,
                                # jobs put back (full or draining) come due without a notification
                                fetch_job_polling_interval=min(5.0, self.config.host_heartbeat_interval),
                                stalled_worker_timeout=self.config.host_stale_after)
        finally:
            self._stop.set()

    # -- the task ---------------------------------------------------------------------------------
    def run_turn(self, context: procrastinate.JobContext, turn_id: int) -> str:
        with database.connection_context():
            turn = Turn.get_or_none(Turn.id == turn_id)
            if turn is None or turn.status in FINISHED_TURNS:
                return "nothing to do"  # deleted or cancelled meanwhile, or a sweep re-deferred a done turn
            attempt = self._take_slot(turn, context.job.id)
            try:
                self.runner.run(turn_id)
            finally:
                outcome = Turn.get_by_id(turn_id).status
                TurnAttempt.update(finished_at=utcnow(), outcome=outcome).where(TurnAttempt.id == attempt.id).execute()
                # a real guest started for this session lives here now (the dry-run runner sets it itself)
                sandbox_id = Session.get_by_id(turn.session_id).sandbox_id
                if sandbox_id:
                    Sandbox.update(host=self.host_id).where((Sandbox.id == sandbox_id) & Sandbox.host.is_null()).execute()
            requeue_if_more(turn.session_id)
            return outcome

    def _take_slot(self, turn: Turn, job_id: int) -> TurnAttempt:
        with self._slots:
            host = Host.get_by_id(self.host_id)
            running = TurnAttempt.select().where((TurnAttempt.host == self.host_id)
                                                 & TurnAttempt.finished_at.is_null()).count()
            if host.draining or running >= host.capacity:
                raise HostFull(f"host {self.host_id}: {running}/{host.capacity} running"
                               + (", draining" if host.draining else ""))
            return TurnAttempt.create(turn=turn.id, host=self.host_id, job_id=job_id, started_at=utcnow())
