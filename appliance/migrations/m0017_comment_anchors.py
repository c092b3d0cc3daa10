"""A line comment keeps the turn whose diff it was written on and the text of its line, so a later
turn's diff can re-anchor it or show it as outdated (appliance.sessions.anchors)."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("comment", "turn_number", peewee.IntegerField(null=True)),
            migrator.add_column("comment", "line_text", peewee.TextField(default="")))
