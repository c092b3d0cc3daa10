from __future__ import annotations

import peewee

from ..accounts.models import Team, User
from ..db import BaseModel, utcnow

NETWORK_LEVELS = ("none", "limited", "custom", "full")


class Environment(BaseModel):
    owner = peewee.ForeignKeyField(User, backref="environments", on_delete="CASCADE")
    name = peewee.CharField()
    network_level = peewee.CharField(default="limited")
    allowed_domains = peewee.TextField(default="")  # one pattern per line (custom level)
    include_defaults = peewee.BooleanField(default=False)  # custom: also allow the default list
    variables = peewee.TextField(default="")  # .env text, validated on save
    setup_script = peewee.TextField(default="")
    profile = peewee.CharField(default="")  # "" = the appliance's default image profile
    model = peewee.CharField(default="")  # "" = the agent's default model (environments.model_choice)
    vcpus = peewee.IntegerField(null=True)
    memory_mb = peewee.IntegerField(null=True)
    disk_gb = peewee.IntegerField(null=True)
    is_default = peewee.BooleanField(default=False)
    team = peewee.ForeignKeyField(Team, null=True, on_delete="SET NULL")  # its members may use it too
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("owner", "name"), True),)

    @property
    def domains(self) -> list[str]:
        return [d.strip() for d in self.allowed_domains.splitlines() if d.strip()]


class CacheState:
    BUILDING = "building"  # its disk is being saved
    READY = "ready"
    FAILED = "failed"
    DROPPED = "dropped"  # replaced, expired or dropped by an admin: its files go once no sandbox uses them


class EnvironmentCache(BaseModel):
    """A guest disk saved right after an environment's checkout, setup script and SessionStart hooks
    succeeded (appliance/sessions/envcache.py). Its key is everything that made that disk."""

    key = peewee.CharField(index=True)
    environment = peewee.ForeignKeyField(Environment, backref="caches", on_delete="CASCADE")
    repository = peewee.CharField()
    image_dir = peewee.CharField()  # the image version the disk is backed by
    host = peewee.CharField(default="")  # the worker host holding the file; "" on a single server
    state = peewee.CharField(default=CacheState.BUILDING)
    base_sha = peewee.CharField(null=True)  # the commit the saved checkout was at
    source_session = peewee.CharField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    last_used_at = peewee.DateTimeField(null=True)
    uses = peewee.IntegerField(default=0)
    size_bytes = peewee.BigIntegerField(null=True)
    error = peewee.TextField(null=True)

    class Meta:
        table_name = "environment_cache"
