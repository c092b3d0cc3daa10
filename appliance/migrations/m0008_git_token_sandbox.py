"""Git tokens are bound to the sandbox they were issued for (appliance.gitproxy.tokens.verify).

Tokens issued before this migration have no sandbox and so work from nowhere: they are revoked
here as well, so that the record says why they stopped working.
"""

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("git_token", "sandbox_id", peewee.CharField(null=True)))

    class GitToken(peewee.Model):  # the columns this migration touches, as they are now
        token_hash = peewee.CharField(primary_key=True)
        revoked_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "git_token"

    GitToken.update(revoked_at=utcnow()).where(GitToken.revoked_at.is_null()).execute()
