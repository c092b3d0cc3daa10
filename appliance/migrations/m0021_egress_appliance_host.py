"""More than one host: each egress audit row names the appliance host whose proxy or resolver
decided it (`appliance_host`; NULL on a single server). Not `host`, which is the destination."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("egress_event", "appliance_host", peewee.CharField(null=True)),
            migrator.add_index("egress_event", ("appliance_host",), False))
