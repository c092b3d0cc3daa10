"""Accounts people run themselves: a user can be disabled and ask for browser notifications, a
session can be archived, an environment can be shared with a team."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def apply(db: peewee.Database) -> None:
    class Team(peewee.Model):  # the snapshot the foreign key points at (m0005's table)
        name = peewee.CharField(unique=True)

        class Meta:
            database = db
            table_name = "team"

    migrator = SchemaMigrator.from_database(db)
    migrate(
        migrator.add_column("user", "disabled", peewee.BooleanField(default=False)),
        migrator.add_column("user", "notify_browser", peewee.BooleanField(default=False)),
        migrator.add_column("session", "archived_at", peewee.DateTimeField(null=True)),
        migrator.add_column("environment", "team_id", peewee.ForeignKeyField(
            Team, field=Team.id, null=True, on_delete="SET NULL")),
    )
