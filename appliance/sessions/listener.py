"""On PostgreSQL, events emitted by other processes (worker hosts) wake this process's followers:
one thread per process LISTENs on the events channel and turns each notification into the
in-process wake-up of stream.py."""

from __future__ import annotations

import logging
import threading
import time

import peewee

log = logging.getLogger(__name__)

_started: threading.Thread | None = None
_lock = threading.Lock()
received: list[str] = []  # the session ids notified, newest last (bounded; the tests read it)


def ensure_started(db: peewee.PostgresqlDatabase) -> None:
    global _started
    with _lock:
        if _started is None or not _started.is_alive():
            _started = threading.Thread(target=_listen_forever, args=(db,), name="events-listener", daemon=True)
            _started.start()


def _listen_forever(db: peewee.PostgresqlDatabase) -> None:
    import psycopg

    from .stream import CHANNEL, wake_followers

    params = dict(db.connect_params)
    while True:
        try:
            with psycopg.connect(dbname=db.database, autocommit=True, **params) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                wake_followers()  # anything emitted while we were not listening
                for note in conn.notifies():
                    received.append(note.payload)
                    del received[:-1000]
                    wake_followers()
        except Exception:  # the database restarted: listen again (followers still wake on their timeout)
            log.warning("events listener lost its connection; reconnecting", exc_info=True)
            time.sleep(1.0)
