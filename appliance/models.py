"""Core tables. Domain packages may define their own models on `appliance.db.BaseModel`."""

from __future__ import annotations

import secrets

import peewee

from .db import BaseModel, JSONField, utcnow


class SandboxState:
    CREATING = "creating"
    RUNNING = "running"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    FAILED = "failed"  # create failed; everything it made was removed
    LOST = "lost"  # its domain vanished behind our back (found by reconcile)

    LIVE = (CREATING, RUNNING, DESTROYING)
    ENDED = (DESTROYED, FAILED, LOST)


def new_sandbox_id() -> str:
    return "sb-" + secrets.token_hex(5)


def new_guest_mac() -> str:
    """A random, locally administered, unicast MAC for a guest (no guest can guess another's)."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


class Sandbox(BaseModel):
    id = peewee.CharField(primary_key=True, default=new_sandbox_id)
    profile = peewee.CharField()
    image_dir = peewee.CharField()  # the exact built image version the overlay is backed by
    state = peewee.CharField(default=SandboxState.CREATING, index=True)
    vcpus = peewee.IntegerField()
    memory_mb = peewee.IntegerField()
    disk_gb = peewee.IntegerField()
    address = peewee.CharField(null=True)  # IPv4 on the appliance bridge, unique among live sandboxes
    tap = peewee.CharField(null=True)
    mac = peewee.CharField(null=True, default=new_guest_mac)  # random: not derivable from the id
    accel = peewee.CharField(null=True)  # kvm | tcg, as chosen when it was created
    purpose = peewee.CharField(default="admin")  # who asked for it: "admin", "session", or "pool" (a warm slot)
    session_id = peewee.CharField(null=True)  # the session it runs, when purpose is "session"
    host = peewee.CharField(null=True)  # the worker host it lives on; NULL: this one server (no cluster)
    network_policy = JSONField(default=dict)  # netpolicy.allowlist.Policy.to_dict()
    template_key = peewee.CharField(null=True)  # the guest template it was cloned from (its disk backs ours)
    env_cache_id = peewee.IntegerField(null=True)  # the environment cache its disk is backed by
    created_at = peewee.DateTimeField(default=utcnow)
    ready_at = peewee.DateTimeField(null=True)
    ended_at = peewee.DateTimeField(null=True)
    error = peewee.TextField(null=True)

    @property
    def domain_name(self) -> str:
        return f"appliance-{self.id}"

    @property
    def live(self) -> bool:
        return self.state in SandboxState.LIVE


def on_host(host: str | None):
    """Sandboxes of `host` (`Config.appliance_host`): None is the one host of a single server."""
    return Sandbox.host.is_null() if host is None else Sandbox.host == host


class TemplateState:
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"  # could not be made; guests cold-boot (error says why)
    DROPPED = "dropped"  # an admin dropped it, or it was replaced; its files go once no sandbox uses them


class GuestTemplate(BaseModel):
    """A saved, booted guest new sandboxes start from (appliance/sandbox/templates.py). The files are
    the truth for starting a clone; this row is what admins see, and says which host holds it."""

    key = peewee.CharField()  # TemplateKey.id
    host = peewee.CharField(default="")  # the worker host holding its files; "" on a single server
    profile = peewee.CharField()
    image_hash = peewee.CharField()
    domain_type = peewee.CharField()
    vcpus = peewee.IntegerField()
    memory_mb = peewee.IntegerField()
    disk_gb = peewee.IntegerField()
    qemu_version = peewee.CharField()
    state = peewee.CharField(default=TemplateState.BUILDING)
    created_at = peewee.DateTimeField(default=utcnow)
    made_at = peewee.DateTimeField(null=True)
    build_seconds = peewee.FloatField(null=True)
    error = peewee.TextField(null=True)

    class Meta:
        table_name = "guest_template"
        indexes = ((("host", "key"), True),)
