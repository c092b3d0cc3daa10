"""Worker hosts and the attempts at running turns on them."""

from __future__ import annotations

from datetime import timedelta

import peewee

from ..db import BaseModel, utcnow
from ..sessions.models import Turn, TurnStatus

FINISHED_TURNS = (TurnStatus.COMPLETED, TurnStatus.FAILED, TurnStatus.CANCELLED, TurnStatus.INTERRUPTED)


class Host(BaseModel):
    id = peewee.CharField(primary_key=True)
    address = peewee.CharField(default="")
    capacity = peewee.IntegerField()
    version = peewee.CharField(default="")
    heartbeat = peewee.DateTimeField(default=utcnow)
    draining = peewee.BooleanField(default=False)  # no new turns; running ones finish
    started_at = peewee.DateTimeField(default=utcnow)

    def alive(self, stale_after: float) -> bool:
        return self.heartbeat >= utcnow() - timedelta(seconds=stale_after)


class TurnAttempt(BaseModel):
    """One run of a turn on one host; a host that died mid-turn leaves an attempt never finished."""

    turn = peewee.ForeignKeyField(Turn, backref="attempts", on_delete="CASCADE")
    host = peewee.CharField()
    job_id = peewee.BigIntegerField(null=True)
    started_at = peewee.DateTimeField(default=utcnow)
    finished_at = peewee.DateTimeField(null=True)
    outcome = peewee.CharField(null=True)  # the turn's status when the attempt ended, or "host-lost"

    class Meta:
        table_name = "turn_attempt"


class JoinToken(BaseModel):
    """A single-use, expiring token an admin minted for a new worker host (appliance/cluster/join.py);
    only its SHA-256 is stored."""

    token_hash = peewee.CharField(unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    created_by = peewee.CharField(default="")  # the admin's username, or "cli" (root on control)
    used_at = peewee.DateTimeField(null=True)
    used_by_host = peewee.CharField(null=True)

    class Meta:
        table_name = "host_join_token"


class HostCredential(BaseModel):
    """What a joined host proves itself with to control (images): issued at join, shown to that host
    only; a new join of the same host id replaces it. Only its SHA-256 is stored."""

    host_id = peewee.CharField(primary_key=True)
    credential_hash = peewee.CharField(unique=True)
    issued_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "host_credential"
