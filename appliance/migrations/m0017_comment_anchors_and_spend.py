"""Three things, one migration number:

* a line comment keeps the turn whose diff it was written on and the text of its line, so a later
  turn's diff can re-anchor it or show it as outdated (appliance.sessions.anchors);
* spend: the model API usage the egress proxy meters (netpolicy.usage.ModelUsage) and the monthly
  budgets an admin sets per user or team (appliance.sessions.spend.models.Budget);
* best-of-N: sessions started as attempts of one task share a group id (appliance.sessions.attempts).
"""

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("comment", "turn_number", peewee.IntegerField(null=True)),
            migrator.add_column("comment", "line_text", peewee.TextField(default="")),
            migrator.add_column("session", "group_id", peewee.CharField(null=True)),
            migrator.add_column("session", "attempt", peewee.IntegerField(null=True)),
            migrator.add_index("session", ("group_id",), False))

    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        username = peewee.CharField(unique=True)

    class Team(Base):
        name = peewee.CharField(unique=True)

    class ModelUsage(Base):
        time = peewee.DateTimeField(default=utcnow, index=True)
        sandbox_id = peewee.CharField(null=True, index=True)
        session_id = peewee.CharField(null=True, index=True)
        host = peewee.CharField()
        model = peewee.CharField(default="")
        input_tokens = peewee.BigIntegerField(default=0)
        output_tokens = peewee.BigIntegerField(default=0)
        cache_read_tokens = peewee.BigIntegerField(default=0)
        cache_write_tokens = peewee.BigIntegerField(default=0)

        class Meta:
            table_name = "model_usage"

    class Budget(Base):
        user = peewee.ForeignKeyField(User, null=True, unique=True, on_delete="CASCADE")
        team = peewee.ForeignKeyField(Team, null=True, unique=True, on_delete="CASCADE")
        monthly_usd = peewee.FloatField()
        updated_at = peewee.DateTimeField(default=utcnow)

    db.create_tables([ModelUsage, Budget])
