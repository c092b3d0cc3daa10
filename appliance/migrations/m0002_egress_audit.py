"""The egress audit log (netpolicy.audit.EgressEvent)."""

import peewee

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    class EgressEvent(peewee.Model):
        time = peewee.DateTimeField(default=utcnow, index=True)
        sandbox_id = peewee.CharField(null=True, index=True)
        session_id = peewee.CharField(null=True, index=True)
        client = peewee.CharField()
        source = peewee.CharField()
        host = peewee.CharField(null=True)
        port = peewee.IntegerField(null=True)
        method = peewee.CharField(null=True)
        path = peewee.TextField(null=True)
        verdict = peewee.CharField()
        reason = peewee.TextField()
        policy = peewee.CharField(null=True)
        bytes = peewee.BigIntegerField(null=True)

        class Meta:
            database = db
            table_name = "egress_event"

    db.create_tables([EgressEvent])
