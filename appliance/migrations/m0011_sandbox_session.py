"""A session's sandbox names its session in a column of its own (it was sniffed from `purpose`,
which held the session id): `purpose` is now "admin" or "session"."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("sandbox", "session_id", peewee.CharField(null=True)))
    # the pattern as a parameter: psycopg reads a literal % as a placeholder (PostgreSQL)
    db.execute_sql(f"UPDATE sandbox SET session_id = purpose, purpose = 'session' WHERE purpose LIKE {db.param}",
                   ("ses-%",))
