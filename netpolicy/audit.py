"""The egress audit log: every allow/deny decision of the proxy and the resolver.

Rows are written by `AuditWriter`, a background thread that batches inserts so that a request
never waits for the database; the proxy (in the mitmdump child) and the resolver (in the daemon)
each own one. `query()` reads them back for `appliance egress log`; `prune()` keeps the table
bounded by age and by row count.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time

import peewee

from appliance_base.db import BaseModel, connect_database, database, utcnow

log = logging.getLogger(__name__)

ALLOW = "allow"
DENY = "deny"

FIELDS = (
    "time", "sandbox_id", "session_id", "client", "source", "host", "port", "method", "path",
    "verdict", "reason", "policy", "bytes", "appliance_host",
)  # fmt: skip


class EgressEvent(BaseModel):
    time = peewee.DateTimeField(default=utcnow, index=True)
    sandbox_id = peewee.CharField(null=True, index=True)  # None: the address had no policy
    session_id = peewee.CharField(null=True, index=True)
    client = peewee.CharField()  # source address on the bridge
    source = peewee.CharField()  # "proxy" | "dns"
    host = peewee.CharField(null=True)
    port = peewee.IntegerField(null=True)
    method = peewee.CharField(null=True)  # HTTP method, CONNECT, TLS, TCP, or the DNS query type
    path = peewee.TextField(null=True)
    verdict = peewee.CharField()  # allow | deny
    reason = peewee.TextField()
    policy = peewee.CharField(null=True)  # the level as described, e.g. "custom + defaults"
    bytes = peewee.BigIntegerField(null=True)
    # the appliance host whose proxy or resolver decided (more than one host); None: a single server
    appliance_host = peewee.CharField(null=True, index=True)

    class Meta:
        table_name = "egress_event"

    def as_dict(self) -> dict:
        d = {f: getattr(self, f) for f in FIELDS}
        d["time"] = self.time.isoformat(timespec="milliseconds") + "Z" if self.time else None
        return d


def record(**fields) -> EgressEvent:
    return EgressEvent.create(**_clean(fields))


def _clean(fields: dict) -> dict:
    row = {k: v for k, v in fields.items() if k in FIELDS}
    for key in ("host", "path", "reason", "method"):
        if isinstance(row.get(key), str):
            row[key] = row[key][:2000]
    row.setdefault("time", utcnow())
    return row


def query(ident: str, limit: int = 100, appliance_host: str | None = None) -> list[EgressEvent]:
    """The newest `limit` events of a sandbox or a session (matched on either id), oldest first;
    with `appliance_host`, only those that host decided."""
    q = EgressEvent.select().where((EgressEvent.sandbox_id == ident) | (EgressEvent.session_id == ident))
    if appliance_host:
        q = q.where(EgressEvent.appliance_host == appliance_host)
    q = q.order_by(EgressEvent.time.desc(), EgressEvent.id.desc()).limit(limit)
    return list(reversed(list(q)))


def prune(retention_days: float, max_rows: int = 0, now: dt.datetime | None = None) -> int:
    """Delete events older than the retention, then the oldest beyond `max_rows`. Returns the count."""
    now = now or utcnow()
    deleted = 0
    if retention_days > 0:
        cutoff = now - dt.timedelta(days=retention_days)
        deleted += EgressEvent.delete().where(EgressEvent.time < cutoff).execute()
    if max_rows > 0:
        newest_first = (EgressEvent.time.desc(), EgressEvent.id.desc())
        edge = EgressEvent.select(EgressEvent.id, EgressEvent.time).order_by(*newest_first).offset(max_rows).first()
        if edge is not None:
            older = (EgressEvent.time < edge.time) | ((EgressEvent.time == edge.time) & (EgressEvent.id <= edge.id))
            deleted += EgressEvent.delete().where(older).execute()
    return deleted


class AuditWriter:
    """Queue audit rows and insert them in batches from one background thread.

    `submit()` never blocks on the database; when the queue is full the row is dropped and
    counted (`dropped`), the request still goes on. Every `prune_interval` seconds the writer
    also prunes (when a retention is given). Every row names `appliance_host`, the host this
    writer's proxy or resolver runs on (None on a single server).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        retention_days: float = 0,
        max_rows: int = 0,
        prune_interval: float = 3600.0,
        batch: int = 200,
        maxsize: int = 50_000,
        appliance_host: str | None = None,
    ):
        self.database_url = database_url
        self.appliance_host = appliance_host or None
        self.retention_days = retention_days
        self.max_rows = max_rows
        self.prune_interval = prune_interval
        self.batch = batch
        self.dropped = 0
        self.written = 0
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0

    def start(self) -> AuditWriter:
        if self.database_url:
            connect_database(self.database_url)
        self._thread = threading.Thread(target=self._run, name="egress-audit", daemon=True)
        self._thread.start()
        return self

    def submit(self, **fields) -> None:
        self._put(EgressEvent, _clean({**fields, "appliance_host": self.appliance_host}))

    def usage(self, entry, **fields) -> None:
        """One model API response's token counts (netpolicy.usage), attributed through `entry` like
        a decision; written by the same thread, to its own table."""
        from .usage import ModelUsage

        self._put(ModelUsage, {"sandbox_id": entry.sandbox_id if entry else None,
                               "session_id": entry.session_id if entry else None, "time": utcnow(), **fields})

    def _put(self, model, row: dict) -> None:
        with self._idle:
            self._pending += 1
        try:
            self._q.put_nowait((model, row))
        except queue.Full:
            self.dropped += 1
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def decision(self, entry, **fields) -> None:
        """One allow/deny row, attributed through `entry` (the client's SandboxPolicy, or None for
        an address no sandbox holds) — the proxy and the resolver record the same way."""
        self.submit(sandbox_id=entry.sandbox_id if entry else None,
                    session_id=entry.session_id if entry else None,
                    policy=entry.policy.describe if entry else None, **fields)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (or failed). True if it was."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stop.set()
        self._q.put(None)
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        db = database
        while not self._stop.is_set():
            first = self._q.get()
            if first is None:
                break
            rows = [first]
            while len(rows) < self.batch:
                try:
                    row = self._q.get_nowait()
                except queue.Empty:
                    break
                if row is None:
                    self._stop.set()
                    break
                rows.append(row)
            try:
                with db.connection_context():
                    with db.atomic():
                        for model in {m for m, _ in rows}:
                            model.insert_many([r for m, r in rows if m is model]).execute()
                    self.written += len(rows)
                    self._maybe_prune()
            except peewee.PeeweeException as e:  # never take the proxy or resolver down with us
                log.error("egress audit: could not write %d rows: %s", len(rows), e)
            finally:
                with self._idle:
                    self._pending -= len(rows)
                    self._idle.notify_all()

    def _maybe_prune(self) -> None:
        if not (self.retention_days or self.max_rows):
            return
        now = time.monotonic()
        if now - self._last_prune < self.prune_interval:
            return
        self._last_prune = now
        n = prune(self.retention_days, self.max_rows)
        if n:
            log.info("egress audit: pruned %d old events", n)
