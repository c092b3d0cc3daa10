"""The session engine: admission, one worker thread per running turn, idle expiry, restart
recovery. The daemon owns one; tests make their own.

Admission: a queued turn starts when its session has no turn running, the number of running
sessions is under `max_running_sessions` (if set), its guest's real memory fits (see
`memory_fits`), and its owner is under `max_running_per_user`.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from appliance_base.config import Config

from ..db import database, utcnow
from ..gitproxy.mirror import MirrorStore
from ..gitproxy.service import GitProxyService
from ..hostmem import free_memory_mb, total_memory_mb
from ..models import Sandbox
from ..sandbox.manager import SandboxManager
from .lifecycle import RUNNING, move_to, requeue_if_more
from .models import Session, Status, Turn, TurnStatus
from .pushes import record_push
from .runner import TurnRunner, repo_spec, resolve_repo
from .service import SessionService
from .stream import emit

log = logging.getLogger(__name__)



def session_memory_mb(session: Session, default: int) -> int:
    """The memory its guest is given: the environment's size when it set one, else the default."""
    return int((session.environment_snapshot or {}).get("memory_mb") or default)


class Engine:
    def __init__(self, config: Config, sandboxes: SandboxManager, has_credential=None,
                 model_base_urls: dict[str, str] | None = None, git_proxy_host: str | None = None,
                 git_proxy_port: int | None = None, admission=None):
        """`admission`: with more than one host, control's admission (appliance.cluster) replaces this
        process's dispatcher; turns then run on worker hosts, not here."""
        self.config = config
        self.admission = admission
        self.sandboxes = sandboxes
        self.mirrors = MirrorStore.from_config(config)
        self.gitproxy = GitProxyService.from_config(config, resolve_repo, host=git_proxy_host, port=git_proxy_port,
                                                    on_push=record_push)
        self.runner = TurnRunner(config, sandboxes, self.gitproxy.guest_remote, self.mirrors, self.mirrors.git,
                                 model_base_urls)
        self.has_credential = has_credential
        self.service = SessionService(config, credential_check=self._check_credential if has_credential else None,
                                      wake=self.wake, sandboxes=sandboxes, controls=self.runner.controls)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._workers: dict[str, threading.Thread] = {}
        self._stopping: set[str] = set()
        self._lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None

    def _check_credential(self, agent: str) -> None:
        from ..agents import credentials

        # the same host the runner opens in the guest's policy (a configured base URL moves it)
        credentials.check(agent, self.has_credential, base_url=self.runner.model_base_urls.get(agent, ""))

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self.admission is None:  # with worker hosts, their turns are theirs to recover
            with database.connection_context():
                self.recover()
            self.gitproxy.start()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="session-dispatch", daemon=True)
        self._dispatcher.start()

    def stop(self, wait: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._dispatcher:
            self._dispatcher.join(wait)
        for worker in list(self._workers.values()):
            worker.join(wait)
        if self.admission is None:
            self.gitproxy.stop()

    def wake(self) -> None:
        self._wake.set()

    def recover(self) -> None:
        """After a crash: turns that were running are interrupted (what they pushed stays), their
        sessions wait for a follow-up; queued turns run again; live guests are kept for reuse."""
        interrupted = list(Turn.select().where(Turn.status == TurnStatus.RUNNING))
        for turn in interrupted:
            Turn.update(status=TurnStatus.INTERRUPTED, finished_at=utcnow(),
                        error="the appliance restarted during this turn").where(Turn.id == turn.id).execute()
            emit(turn.session_id, "turn_end", {"turn": turn.number, "ok": False, "interrupted": True}, turn)
        for session in Session.select().where(Session.status.in_(RUNNING)):
            queued = Turn.select().where((Turn.session == session) & (Turn.status == TurnStatus.QUEUED)).exists()
            status = Status.QUEUED if queued else Status.IDLE
            detail = "" if queued else "interrupted by a restart: send a message to continue"
            move_to(session, status, detail, from_status=session.status)
        # a guest whose sandbox is gone (reconcile marked it lost) is no longer the session's
        for session in Session.select().where(Session.sandbox_id.is_null(False)):
            sb = Sandbox.get_or_none(Sandbox.id == session.sandbox_id)
            if sb is None or not sb.live:
                Session.update(sandbox_id=None).where(Session.id == session.id).execute()

    # -- dispatching ------------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                with database.connection_context():
                    (self.admission or self.dispatch_once)()
            except Exception:  # the next pass retries
                log.exception("session dispatch failed")

    def memory_fits(self, size_mb: int, committed_mb: int) -> bool:
        """May a guest of `size_mb` start while admitted sessions hold `committed_mb`? Their sizes
        together stay within the host's memory less `host_reserved_memory_mb`, and the guest fits
        in what is free now; one session may always run."""
        if not self._workers:
            return True
        reserved = self.config.host_reserved_memory_mb
        return (committed_mb + size_mb <= total_memory_mb() - reserved
                and size_mb <= free_memory_mb() - reserved)

    def dispatch_once(self) -> None:
        with self._lock:
            self._workers = {sid: t for sid, t in self._workers.items() if t.is_alive()}
            for session in Session.select().where(
                    Session.status.in_((Status.CANCELLED, Status.COMPLETED)) & Session.sandbox_id.is_null(False)):
                if session.id not in self._workers:
                    self.runner.release_guest(session.id)
                elif session.id not in self._stopping:
                    self._stopping.add(session.id)  # once: the worker then finishes and releases the guest
                    threading.Thread(target=self._stop_agent, args=(session.id,), daemon=True).start()
            queued = (Turn.select().join(Session)
                      .where((Turn.status == TurnStatus.QUEUED) & (Session.status == Status.QUEUED))
                      .order_by(Turn.created_at, Turn.id))
            per_user: dict[int, int] = {}
            committed = 0  # MiB promised to the guests of admitted sessions
            for sid in self._workers:
                running = Session.get_by_id(sid)
                per_user[running.owner_id] = per_user.get(running.owner_id, 0) + 1
                committed += session_memory_mb(running, self.config.memory_mb)
            for turn in queued:
                sid = turn.session_id
                if sid in self._workers:
                    continue
                first = Turn.select().where((Turn.session == sid) & (Turn.status == TurnStatus.QUEUED)).order_by(Turn.number).first()
                if first.id != turn.id:
                    continue  # turns of a session run in order
                if 0 < self.config.max_running_sessions <= len(self._workers):
                    break
                size = session_memory_mb(turn.session, self.config.memory_mb)
                if not self.memory_fits(size, committed):
                    break  # in order: a smaller session behind it does not overtake
                owner = turn.session.owner_id
                if self.config.max_running_per_user and per_user.get(owner, 0) >= self.config.max_running_per_user:
                    continue
                per_user[owner] = per_user.get(owner, 0) + 1
                committed += size
                worker = threading.Thread(target=self._work, args=(sid, turn.id), name=f"turn-{sid}", daemon=True)
                self._workers[sid] = worker
                worker.start()

    def _stop_agent(self, session_id: str) -> None:
        with database.connection_context():
            self.runner.stop_agent(session_id)

    def _work(self, session_id: str, turn_id: int) -> None:
        try:
            with database.connection_context():
                self.runner.run(turn_id)
                self._requeue_if_more(session_id)
        finally:
            self._stopping.discard(session_id)
            self._wake.set()  # capacity freed, or the session's next turn may start

    def _requeue_if_more(self, session_id: str) -> None:
        requeue_if_more(session_id)

    def running_sessions(self) -> list[str]:
        return [sid for sid, t in self._workers.items() if t.is_alive()]

    # -- periodic ---------------------------------------------------------------------------------
    def expire_idle(self) -> list[str]:
        """Destroy guests of sessions idle longer than idle_guest_timeout; sessions stay resumable."""
        cutoff = utcnow() - timedelta(seconds=self.config.idle_guest_timeout)
        expired = []
        for session in Session.select().where((Session.status.in_((Status.IDLE, Status.FAILED)))
                                              & Session.sandbox_id.is_null(False) & (Session.updated_at < cutoff)):
            if session.id in self._workers:
                continue
            self.runner.release_guest(session.id)
            emit(session, "log", {"stream": "appliance", "text": "idle guest destroyed; a follow-up starts a fresh one"})
            expired.append(session.id)
        return expired


__all__ = ["Engine", "repo_spec"]
