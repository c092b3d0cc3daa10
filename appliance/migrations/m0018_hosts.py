"""More than one host: the worker hosts (capacity, heartbeat, draining) and the host each sandbox lives on."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def apply(db: peewee.Database) -> None:
    db.execute_sql(
        "CREATE TABLE host (id VARCHAR(255) NOT NULL PRIMARY KEY, address VARCHAR(255) NOT NULL DEFAULT '', "
        "capacity INTEGER NOT NULL, version VARCHAR(255) NOT NULL DEFAULT '', heartbeat TIMESTAMP NOT NULL, "
        "draining BOOLEAN NOT NULL DEFAULT FALSE, started_at TIMESTAMP NOT NULL)")
    migrator = SchemaMigrator.from_database(db)
    # NULL: the one host of a single-server install (the daemon's own libvirt)
    migrate(migrator.add_column("sandbox", "host", peewee.CharField(null=True)),
            migrator.add_index("sandbox", ("host",), False))
