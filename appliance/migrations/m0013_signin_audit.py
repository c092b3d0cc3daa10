"""The sign-in audit log (appliance.accounts.signin.SigninEvent): it also drives lockouts."""

import peewee

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    class User(peewee.Model):
        class Meta:
            database = db
            table_name = "user"

    class SigninEvent(peewee.Model):
        time = peewee.DateTimeField(default=utcnow, index=True)
        username = peewee.CharField(index=True)
        user = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
        address = peewee.CharField(index=True)
        outcome = peewee.CharField()
        user_agent = peewee.CharField(default="")

        class Meta:
            database = db
            table_name = "signin_event"

    db.create_tables([SigninEvent])
