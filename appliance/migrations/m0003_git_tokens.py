"""Per-session git proxy tokens (appliance.gitproxy.tokens.GitToken): only hashes are stored."""

import peewee

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    class GitToken(peewee.Model):
        token_hash = peewee.CharField(primary_key=True)
        session_id = peewee.CharField(index=True)
        repo_key = peewee.CharField()
        work_branch = peewee.CharField()
        created_at = peewee.DateTimeField(default=utcnow)
        expires_at = peewee.DateTimeField(index=True)
        revoked_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "git_token"

    db.create_tables([GitToken])
