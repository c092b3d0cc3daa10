"""The daemon's database: the shared handle (`appliance_base.db`) plus migrations.

Models bind to `database`, a proxy initialised by `open_database(url)`. Migrations are modules in
`appliance/migrations/` named `mNNNN_<what>.py`, each with `apply(db)`; they run in name order and
each applied name is recorded in `schema_migrations`, inside one transaction per migration, so a
failed migration leaves the schema as it was before it.
"""

from __future__ import annotations

import importlib
import pkgutil

import peewee

from appliance_base.db import SQLITE_PRAGMAS, BaseModel, JSONField, connect_url, database, utcnow


class SchemaMigration(BaseModel):
    name = peewee.CharField(primary_key=True)
    applied_at = peewee.DateTimeField(default=utcnow)


def open_database(url: str) -> peewee.Database:
    """Connect `database` to the URL and bring the schema up to date."""
    db = connect_url(url)
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


__all__ = ["SQLITE_PRAGMAS", "BaseModel", "JSONField", "SchemaMigration", "database", "migrate", "open_database",
           "utcnow"]
