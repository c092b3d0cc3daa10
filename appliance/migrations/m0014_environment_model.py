"""An environment may name the model its sessions use (chosen from the admin's allowed list)."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("environment", "model", peewee.CharField(default="")))
