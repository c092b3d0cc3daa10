"""Git tokens are bound to the sandbox they were issued for (appliance.gitproxy.tokens.verify).

A live token issued before this migration is bound to its session's current guest (the only one
it was ever handed to), so a session that keeps its guest across the upgrade can still push; a
token whose session has no guest any more is revoked.
"""

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("git_token", "sandbox_id", peewee.CharField(null=True)))

    class Session(peewee.Model):  # the columns this migration reads, as they are now
        id = peewee.CharField(primary_key=True)
        sandbox_id = peewee.CharField(null=True)

        class Meta:
            database = db
            table_name = "session"

    class GitToken(peewee.Model):
        token_hash = peewee.CharField(primary_key=True)
        session_id = peewee.CharField()
        sandbox_id = peewee.CharField(null=True)
        revoked_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "git_token"

    guest = Session.select(Session.sandbox_id).where(Session.id == GitToken.session_id)
    GitToken.update(sandbox_id=guest).where(GitToken.revoked_at.is_null()).execute()
    GitToken.update(revoked_at=utcnow()).where(GitToken.revoked_at.is_null() & GitToken.sandbox_id.is_null()).execute()
