"""The admin's guest size maximums (appliance.guest_limits.GuestLimitOverride): one row."""

import peewee

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    class GuestLimitOverride(peewee.Model):
        vcpus = peewee.IntegerField(null=True)
        memory_mb = peewee.IntegerField(null=True)
        disk_gb = peewee.IntegerField(null=True)
        updated_at = peewee.DateTimeField(default=utcnow)

        class Meta:
            database = db
            table_name = "guest_limit_override"

    db.create_tables([GuestLimitOverride])
