"""Where a user hears that a turn ended: a webhook URL and an e-mail address (both optional)."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(
        migrator.add_column("user", "webhook_url", peewee.CharField(default="")),
        migrator.add_column("user", "email", peewee.CharField(default="")),
    )
