"""API tokens expire (appliance.accounts.tokens). Tokens made before this get the default lifetime
from now, so nothing stops working at once and nothing lives forever."""

import datetime as dt

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from appliance.db import utcnow

DAYS = 90  # accounts.tokens.DEFAULT_DAYS when this migration was written


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("api_token", "expires_at", peewee.DateTimeField(null=True)))

    class ApiToken(peewee.Model):  # the columns this migration touches, as they are now
        expires_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "api_token"

    ApiToken.update(expires_at=utcnow() + dt.timedelta(days=DAYS)).where(ApiToken.expires_at.is_null()).execute()
