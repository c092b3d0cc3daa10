"""An admin's monthly budget for one user or one team (else the configured default applies)."""

from __future__ import annotations

import peewee

from ...accounts.models import Team, User
from ...db import BaseModel, utcnow


class Budget(BaseModel):
    user = peewee.ForeignKeyField(User, null=True, unique=True, on_delete="CASCADE")
    team = peewee.ForeignKeyField(Team, null=True, unique=True, on_delete="CASCADE")
    monthly_usd = peewee.FloatField()  # 0: no budget
    updated_at = peewee.DateTimeField(default=utcnow)
