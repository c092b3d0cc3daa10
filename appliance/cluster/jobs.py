"""Turns as Procrastinate jobs: the names both roles agree on, and the app over the shared PostgreSQL.

A turn's job is only its execution lease; the turn row stays what people see. Per job:
  lock           `session:<id>`  a session's turns never overlap and run in order
  queueing_lock  `turn:<id>`     a turn is never queued twice
  queue          `host:<id>`     while the session's guest lives on that host, else `any`
"""

from __future__ import annotations

import procrastinate

RUN_TURN = "appliance.run_turn"
ANY_QUEUE = "any"


def host_queue(host_id: str) -> str:
    return f"host:{host_id}"


def session_lock(session_id: str) -> str:
    return f"session:{session_id}"


def turn_queueing_lock(turn_id: int) -> str:
    return f"turn:{turn_id}"


def make_app(database_url: str, *, worker: bool = False) -> procrastinate.App:
    """Control defers and re-routes with a blocking connector; a worker runs an async one."""
    connector = (procrastinate.PsycopgConnector(conninfo=database_url) if worker
                 else procrastinate.SyncPsycopgConnector(conninfo=database_url))
    return procrastinate.App(connector=connector)


def ensure_schema(database_url: str) -> None:
    """Procrastinate's tables in the shared database, once (under an advisory lock: control and
    workers may start together)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('appliance.procrastinate_schema'))")
        try:
            if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None:
                app = make_app(database_url)
                with app.open():
                    app.schema_manager.apply_schema()
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('appliance.procrastinate_schema'))")
