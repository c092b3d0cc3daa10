"""The database handle every package binds its models to, and the column types they share.

`database` is a peewee proxy: the daemon initialises it from a URL with `appliance.db.open_database`
(which also runs the migrations); processes that only read and write rows the daemon's schema
already has (the proxy's audit writer, the standalone resolver) bind it with `connect_database`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import peewee
from playhouse.db_url import connect

from .errors import ConfigError

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "normal",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class JSONField(peewee.TextField):
    """A JSON document in a text column (portable across SQLite and PostgreSQL)."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


def connect_url(url: str) -> peewee.Database:
    """A connection for `url` (SQLite with our pragmas, PostgreSQL), not yet bound to `database`."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        _private_file(path)
        return connect(url, pragmas=SQLITE_PRAGMAS)
    try:
        return connect(url)
    except RuntimeError as e:  # unknown scheme
        raise ConfigError(f"database_url {url!r}: {e}", hint="use sqlite:///PATH or postgresql://...") from e


def _private_file(path: Path) -> None:
    """The SQLite file readable by its owner only (it holds password hashes and repository
    credentials; its -wal and -shm files take the same mode); made so before the first write."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # read-only or missing directory: SQLite reports it in its own words
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def connect_database(url: str) -> peewee.Database:
    """Bind the models to `url` without migrating (for processes other than the daemon); a no-op
    when `database` is bound already."""
    if database.obj is not None:
        return database.obj
    db = connect_url(url)
    database.initialize(db)
    return db
