"""Control's side of turns as jobs: admission (turn order, the global per-user limit) defers one
job per admitted turn, routed to the host holding the session's guest; hosts that stopped
heartbeating lose their turns to `any` (stalled running jobs are retried there; queued ones are
cancelled and deferred again, since no API moves a queued job to another queue)."""

from __future__ import annotations

import logging
from datetime import timedelta

import procrastinate

from appliance_base.config import Config

from ..db import database, utcnow
from ..models import Sandbox, SandboxState
from ..sessions.lifecycle import RUNNING, move_to, requeue_if_more
from ..sessions.models import Session, Status, Turn, TurnStatus
from ..sessions.stream import emit
from .jobs import ANY_QUEUE, RUN_TURN, ensure_schema, host_queue, make_app, session_lock, turn_queueing_lock
from .models import FINISHED_TURNS, Host, TurnAttempt

log = logging.getLogger(__name__)


class ClusterControl:
    def __init__(self, config: Config):
        self.config = config
        ensure_schema(config.database_url)
        self.app = make_app(config.database_url)
        self.app.open()

    def close(self) -> None:
        self.app.close()

    def dispatch_once(self) -> None:
        with database.connection_context():
            self.reroute_lost_hosts()
            self.sweep()
            self.admit()

    # -- admission --------------------------------------------------------------------------------
    def admit(self) -> list[int]:
        """Defer a job for each session's first queued turn, oldest first, within the per-user limit.
        A session counts against its owner from admission until its turn ends."""
        leased = (Turn.select(Turn.session).where(Turn.job_id.is_null(False)
                                                  & Turn.status.in_((TurnStatus.QUEUED, TurnStatus.RUNNING))))
        per_user: dict[int, int] = {}
        for session in Session.select(Session.owner).where(Session.id.in_(leased)):
            per_user[session.owner_id] = per_user.get(session.owner_id, 0) + 1
        queued = (Turn.select().join(Session)
                  .where((Turn.status == TurnStatus.QUEUED) & (Session.status == Status.QUEUED)
                         & Turn.job_id.is_null() & Session.id.not_in(leased))
                  .order_by(Turn.created_at, Turn.id))
        limit = self.config.max_running_per_user
        admitted, seen = [], set()
        for turn in queued:
            sid = turn.session_id
            if sid in seen:
                continue  # turns of a session run in order: only its first queued one
            seen.add(sid)
            owner = turn.session.owner_id
            if limit and per_user.get(owner, 0) >= limit:
                continue
            per_user[owner] = per_user.get(owner, 0) + 1
            self.defer(turn)
            admitted.append(turn.id)
        return admitted

    def sweep(self) -> list[int]:
        """The turn row is the truth, the job only its lease: a queued turn whose job is gone
        (deleted, cancelled or failed by hand or by a crash) loses the lease and is admitted again."""
        waiting = {t.job_id: t.id for t in Turn.select(Turn.id, Turn.job_id).where(
            Turn.job_id.is_null(False) & (Turn.status == TurnStatus.QUEUED))}
        if not waiting:
            return []
        alive = {row["id"] for row in self.app.connector.execute_query_all(
            query="SELECT id FROM procrastinate_jobs WHERE id = ANY(%(ids)s) AND status IN ('todo', 'doing')",
            ids=list(waiting))}
        orphans = [turn_id for job_id, turn_id in waiting.items() if job_id not in alive]
        if orphans:
            Turn.update(job_id=None).where(Turn.id.in_(orphans)).execute()
        return orphans

    def queue_for(self, session_id: str) -> str:
        """`host:<id>` while the session's guest lives on a live, undrained host; else `any`."""
        sandbox_id = Session.get_by_id(session_id).sandbox_id
        sandbox = Sandbox.get_or_none(Sandbox.id == sandbox_id) if sandbox_id else None
        if sandbox is None or not sandbox.live or not sandbox.host:
            return ANY_QUEUE
        host = Host.get_or_none(Host.id == sandbox.host)
        if host is None or host.draining or not host.alive(self.config.host_stale_after):
            return ANY_QUEUE
        return host_queue(host.id)

    def defer(self, turn: Turn, queue: str | None = None) -> int:
        queue = queue or self.queue_for(turn.session_id)
        job_id = self.app.configure_task(RUN_TURN, queue=queue, lock=session_lock(turn.session_id),
                                         queueing_lock=turn_queueing_lock(turn.id)).defer(turn_id=turn.id)
        Turn.update(job_id=job_id).where(Turn.id == turn.id).execute()
        log.info("turn %d of %s deferred to %s (job %d)", turn.number, turn.session_id, queue, job_id)
        return job_id

    # -- hosts that stopped -----------------------------------------------------------------------
    def lost_hosts(self) -> list[Host]:
        cutoff = utcnow() - timedelta(seconds=self.config.host_stale_after)
        return list(Host.select().where(Host.heartbeat < cutoff))

    def reroute_lost_hosts(self) -> list[int]:
        """Turns a dead worker was running start again on `any` with a fresh guest (the transcript
        kept on control restores the conversation); turns queued for it move to `any`. Returns the
        turn ids moved."""
        moved = []
        stalled = self.app.connector.execute_query_all(
            query=procrastinate.sql.queries["select_stalled_jobs_by_heartbeat"], queue=None, task_name=RUN_TURN,
            seconds_since_heartbeat=self.config.host_stale_after)
        for row in stalled:
            turn = Turn.get_or_none(Turn.job_id == row["id"])
            if turn is not None:
                self._restart_elsewhere(turn, f"its host stopped during turn {turn.number}")
                moved.append(turn.id)
            self.app.job_manager.retry_job_by_id(row["id"], retry_at=utcnow_aware(), queue=ANY_QUEUE)
        for host in self.lost_hosts():
            self._forget_guests(host.id)
            for job in self.app.job_manager.list_jobs(queue=host_queue(host.id), status="todo"):
                if not self.app.job_manager.cancel_job_by_id(job.id):
                    continue  # a worker took it meanwhile
                turn = Turn.get_or_none(Turn.job_id == job.id)
                if turn is not None:
                    self.defer(turn, ANY_QUEUE)
                    moved.append(turn.id)
        return moved

    def _restart_elsewhere(self, turn: Turn, why: str) -> None:
        if turn.status in FINISHED_TURNS:
            # the host died after the turn ended, before it let go of the job: the turn stands, and
            # the session's next queued message (if any) is admitted as usual
            TurnAttempt.update(finished_at=turn.finished_at or utcnow(), outcome=turn.status).where(
                (TurnAttempt.turn == turn.id) & TurnAttempt.finished_at.is_null()).execute()
            requeue_if_more(turn.session_id)
            return
        TurnAttempt.update(finished_at=utcnow(), outcome="host-lost").where(
            (TurnAttempt.turn == turn.id) & TurnAttempt.finished_at.is_null()).execute()
        Turn.update(status=TurnStatus.QUEUED, started_at=None).where(Turn.id == turn.id).execute()
        session = Session.get_by_id(turn.session_id)
        if session.status in RUNNING:
            move_to(session, Status.QUEUED, "moving to another host", turn, from_status=session.status)
        emit(session.id, "log", {"stream": "appliance", "text": f"{why}; it starts again on another host"}, turn)
        self._forget_guest_of(session.id)

    def _forget_guests(self, host_id: str) -> None:
        for sandbox in Sandbox.select().where((Sandbox.host == host_id) & Sandbox.state.in_(SandboxState.LIVE)):
            if sandbox.session_id:
                self._forget_guest_of(sandbox.session_id)
        # its warm pool's slots and admins' sandboxes too (the host's reconcile removes their domains
        # when it comes back: they have no live row)
        Sandbox.update(state=SandboxState.LOST, ended_at=utcnow(), error="its host stopped").where(
            (Sandbox.host == host_id) & Sandbox.state.in_(SandboxState.LIVE)).execute()

    def _forget_guest_of(self, session_id: str) -> None:
        """The session's guest was on a host that is gone: it is lost; the next turn starts a fresh one."""
        sandbox_id = Session.get_by_id(session_id).sandbox_id
        if sandbox_id:
            Sandbox.update(state=SandboxState.LOST, ended_at=utcnow(), error="its host stopped").where(
                Sandbox.id == sandbox_id).execute()
            Session.update(sandbox_id=None).where(Session.id == session_id).execute()


def utcnow_aware():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)
