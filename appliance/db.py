"""The database: chosen at runtime from a URL (SQLite by default, PostgreSQL later), plus migrations.

Models bind to `database`, a proxy initialised by `open_database(url)`. Migrations are modules in
`appliance/migrations/` named `mNNNN_<what>.py`, each with `apply(db)`; they run in name order and
each applied name is recorded in `schema_migrations`, inside one transaction per migration, so a
failed migration leaves the schema as it was before it.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import pkgutil
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


class SchemaMigration(BaseModel):
    name = peewee.CharField(primary_key=True)
    applied_at = peewee.DateTimeField(default=utcnow)


def open_database(url: str) -> peewee.Database:
    """Connect `database` to the URL and bring the schema up to date."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        db = connect(url, pragmas=SQLITE_PRAGMAS)
    else:
        try:
            db = connect(url)
        except RuntimeError as e:  # unknown scheme
            raise ConfigError(f"database_url {url!r}: {e}", hint="use sqlite:///PATH or postgresql://...") from e
    database.initialize(db)
    migrate(db)
    return db


def migration_names() -> list[str]:
    from . import migrations

    return sorted(m.name for m in pkgutil.iter_modules(migrations.__path__) if m.name.startswith("m"))


def migrate(db: peewee.Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    with db.connection_context():
        db.create_tables([SchemaMigration], safe=True)
        done = {m.name for m in SchemaMigration.select()}
        applied = []
        for name in migration_names():
            if name in done:
                continue
            module = importlib.import_module(f"{__package__}.migrations.{name}")
            with db.atomic():
                module.apply(db)
                SchemaMigration.create(name=name)
            applied.append(name)
        return applied
