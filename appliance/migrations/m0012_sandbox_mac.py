"""Each sandbox keeps its guest's MAC: random, so no guest can work out another's from its id, and
stored, so reconcile can bind it to its tap again after a restart (issue 11, hole 2)."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def _derived_mac(sandbox_id: str) -> str:
    # How MACs were made before this migration (frozen here): live guests keep theirs.
    digits = sandbox_id.removeprefix("sb-")[:6].ljust(6, "0")
    return "52:54:00:" + ":".join(digits[i:i + 2] for i in range(0, 6, 2))


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("sandbox", "mac", peewee.CharField(null=True)))
    for (sandbox_id,) in db.execute_sql("SELECT id FROM sandbox").fetchall():
        db.execute_sql("UPDATE sandbox SET mac = ? WHERE id = ?".replace("?", db.param), (_derived_mac(sandbox_id), sandbox_id))
