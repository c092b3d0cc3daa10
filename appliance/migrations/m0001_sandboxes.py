"""Sandboxes, and the rule that a bridge address belongs to at most one live sandbox."""

import peewee

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    class Sandbox(peewee.Model):
        id = peewee.CharField(primary_key=True)
        profile = peewee.CharField()
        image_dir = peewee.CharField()
        state = peewee.CharField(index=True)
        vcpus = peewee.IntegerField()
        memory_mb = peewee.IntegerField()
        disk_gb = peewee.IntegerField()
        address = peewee.CharField(null=True)
        tap = peewee.CharField(null=True)
        accel = peewee.CharField(null=True)
        purpose = peewee.CharField()
        created_at = peewee.DateTimeField(default=utcnow)
        ready_at = peewee.DateTimeField(null=True)
        ended_at = peewee.DateTimeField(null=True)
        error = peewee.TextField(null=True)

        class Meta:
            database = db
            table_name = "sandbox"

    db.create_tables([Sandbox])
    # Two creators racing for the same address: the second insert fails instead of sharing it.
    for column in ("address", "tap"):
        db.execute_sql(
            f"CREATE UNIQUE INDEX sandbox_live_{column} ON sandbox ({column}) "
            "WHERE state IN ('creating', 'running', 'destroying')"
        )
