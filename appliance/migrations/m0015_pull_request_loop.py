"""The loop around pull requests: webhook secrets and auto-fix defaults per repository, the PR's
state on its session, forge deliveries seen (replay guard), forge logins of users, a PR's checks
and its review comments (appliance.prloop.models)."""

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(
        migrator.add_column("repository", "webhook_secret", peewee.CharField(default="")),
        migrator.add_column("repository", "autofix_default", peewee.BooleanField(default=False)),
        migrator.add_column("session", "pr_number", peewee.IntegerField(null=True)),
        migrator.add_column("session", "pr_state", peewee.CharField(default="")),
        migrator.add_column("session", "pr_checks", peewee.CharField(default="")),
        migrator.add_column("session", "autofix", peewee.BooleanField(default=False)),
    )

    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    # Stand-ins for tables made earlier, only so the foreign keys name them.
    class User(Base):
        class Meta:
            table_name = "user"

    class Repository(Base):
        class Meta:
            table_name = "repository"

    class Session(Base):
        id = peewee.CharField(primary_key=True)

        class Meta:
            table_name = "session"

    class Turn(Base):
        class Meta:
            table_name = "turn"

    class ForgeDelivery(Base):
        forge = peewee.CharField()
        delivery_id = peewee.CharField()
        repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
        event = peewee.CharField(default="")
        received_at = peewee.DateTimeField(default=utcnow)

        class Meta:
            indexes = ((("forge", "delivery_id"), True),)

    class ForgeLogin(Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        forge = peewee.CharField()
        login = peewee.CharField()

        class Meta:
            indexes = ((("forge", "login"), True),)

    class PrCheck(Base):
        session = peewee.ForeignKeyField(Session, on_delete="CASCADE")
        name = peewee.CharField()
        state = peewee.CharField()
        excerpt = peewee.TextField(default="")
        turn = peewee.ForeignKeyField(Turn, null=True, on_delete="SET NULL")
        updated_at = peewee.DateTimeField(default=utcnow)

        class Meta:
            indexes = ((("session", "name"), True),)

    class PrReviewComment(Base):
        session = peewee.ForeignKeyField(Session, on_delete="CASCADE")
        forge_id = peewee.CharField()
        thread = peewee.CharField(default="")
        author_login = peewee.CharField()
        path = peewee.CharField(default="")
        line = peewee.IntegerField(null=True)
        body = peewee.TextField()
        turn = peewee.ForeignKeyField(Turn, null=True, on_delete="SET NULL")
        ignored = peewee.CharField(default="")
        replied_at = peewee.DateTimeField(null=True)
        created_at = peewee.DateTimeField(default=utcnow)

        class Meta:
            indexes = ((("session", "forge_id"), True),)

    db.create_tables([ForgeDelivery, ForgeLogin, PrCheck, PrReviewComment])
