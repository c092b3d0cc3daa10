"""Each sandbox remembers its egress policy, so a daemon restart can rebuild nft and the proxy's table."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("sandbox", "network_policy", peewee.TextField(default='{"level": "none"}')))
