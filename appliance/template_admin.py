"""What admins see and do about warm starts: the guest templates (rows, their files on this host,
the bytes they take, the live sandboxes cloned from each), dropping one, and the warm pool's slots.

The template code (appliance/sandbox/templates.py) writes the `GuestTemplate` rows and the files;
this module only reads them, except `drop_template`: the row becomes `dropped` and the RAM/state
directory goes at once, so no new clone starts from it. Clones already running keep their copy of
the RAM (each maps the file privately: an unlinked file stays until they end). The disk directory
backs the clones' overlays, so it stays until no live sandbox has the key (the sandbox layer's
reconcile removes it then), and the pool destroys the slots cloned from it.

    <template_dir>/<key>/           RAM file and saved device state (tmpfs)
    <state_dir>/templates/<key>/    the template's disk, the clones' backing file
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import peewee

from appliance_base.config import Config

from .errors import NotFound
from .models import GuestTemplate, Sandbox, SandboxState, TemplateState

POOL = "pool"  # Sandbox.purpose of a warm pool slot
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # TemplateKey.id is 16 hex digits: never a path


def ram_dir(config: Config, key: str) -> Path:
    """Where a template's RAM file and saved state live (on the tmpfs `template_dir`)."""
    return Path(config.template_dir) / key


def disk_dir(config: Config, key: str) -> Path:
    """Where a template's disk (the clones' backing file) lives."""
    return config.state_dir / "templates" / key


@dataclass
class TemplateView:
    key: str
    host: str  # "" on a single server
    profile: str
    image_hash: str
    domain_type: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    qemu_version: str
    state: str  # building | ready | failed | dropped
    created_at: datetime
    made_at: datetime | None
    build_seconds: float | None
    error: str | None
    files: bool | None  # its RAM, state and disk are here; None: it lives on another host
    bytes_on_disk: int  # RAM dir + disk dir on this host, as allocated (the RAM file is sparse)
    users: int  # live sandboxes cloned from it (pool slots included)

    def to_dict(self) -> dict:
        out = asdict(self)
        for name in ("created_at", "made_at"):
            out[name] = out[name].isoformat() + "Z" if out[name] else None
        return out


def _here(config: Config, host: str) -> bool:
    return host in ("", config.host_id)


def _allocated_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:  # removed while we walked
                pass
    return total


def _has_files(config: Config, key: str) -> bool:
    ram = ram_dir(config, key)
    return ((ram / "ram").exists() and (ram / "state").exists()
            and (disk_dir(config, key) / "disk.qcow2").exists())


def _users(key: str, host: str) -> int:
    on_host = (Sandbox.host.is_null() | (Sandbox.host == "")) if host == "" else (Sandbox.host == host)
    return (Sandbox.select().where((Sandbox.template_key == key) & Sandbox.state.in_(SandboxState.LIVE) & on_host)
            .count())


def _view(config: Config, row: GuestTemplate) -> TemplateView:
    here = _here(config, row.host)
    size = (_allocated_bytes(ram_dir(config, row.key)) + _allocated_bytes(disk_dir(config, row.key))) if here else 0
    return TemplateView(
        key=row.key, host=row.host, profile=row.profile, image_hash=row.image_hash, domain_type=row.domain_type,
        vcpus=row.vcpus, memory_mb=row.memory_mb, disk_gb=row.disk_gb, qemu_version=row.qemu_version,
        state=row.state, created_at=row.created_at, made_at=row.made_at, build_seconds=row.build_seconds,
        error=row.error, files=_has_files(config, row.key) if here else None, bytes_on_disk=size,
        users=_users(row.key, row.host))


def list_templates(config: Config) -> list[TemplateView]:
    """Every template row, newest first, with what this host holds of it."""
    rows = GuestTemplate.select().order_by(GuestTemplate.created_at.desc(), GuestTemplate.id.desc())
    return [_view(config, row) for row in rows]


def newest_failure() -> GuestTemplate | None:
    """The newest failed template, unless one was made since (then templates work again)."""
    newest = (GuestTemplate.select()
              .where(GuestTemplate.state.in_((TemplateState.FAILED, TemplateState.READY)))
              .order_by(GuestTemplate.created_at.desc(), GuestTemplate.id.desc()).first())
    return newest if newest is not None and newest.state == TemplateState.FAILED else None


def drop_template(config: Config, key: str) -> TemplateView:
    """Drop template `key`: its rows become `dropped` and its RAM directory on this host goes now.
    Dropping a dropped template again only removes what is left of its RAM directory."""
    rows = list(GuestTemplate.select().where(GuestTemplate.key == key)) if _KEY.match(key or "") else []
    if not rows:
        raise NotFound(f"no guest template {key!r}", hint="`appliance template list` shows the templates and keys")
    GuestTemplate.update(state=TemplateState.DROPPED).where(GuestTemplate.key == key).execute()
    ram = ram_dir(config, key)
    if ram.parent == Path(config.template_dir):  # the key is one path component (checked above)
        shutil.rmtree(ram, ignore_errors=True)
    here = [r for r in rows if _here(config, r.host)] or rows
    return _view(config, GuestTemplate.get_by_id(here[0].id))


@dataclass
class PoolProfile:
    profile: str
    target: int  # slots the pool keeps ready for this profile
    waiting: int  # ready, paused, no session yet
    claimed: int  # taken by a session (its guest now runs that session)
    starting: int  # being cloned (a refill)

    @property
    def slots(self) -> int:
        return self.waiting + self.claimed + self.starting


@dataclass
class PoolStatus:
    enabled: bool
    target: int  # slots the pool keeps for the default profile (0: no pool)
    profiles: list[PoolProfile]

    def to_dict(self) -> dict:
        return {"enabled": self.enabled, "target": self.target,
                "profiles": [{**asdict(p), "slots": p.slots} for p in self.profiles]}


def available_memory_mb(config: Config) -> int:
    """The host memory guests may use (what the engine admits sessions against)."""
    from .sessions.engine import total_memory_mb

    return max(0, total_memory_mb() - config.host_reserved_memory_mb)


def pool_status(config: Config, available_mb: int | None = None) -> PoolStatus:
    """The warm pool's live slots per profile (the default profile always listed when a pool is kept)."""
    target = config.warm_pool_size(available_memory_mb(config) if available_mb is None else available_mb)
    counts: dict[str, PoolProfile] = {}
    if target:
        counts[config.default_profile] = PoolProfile(config.default_profile, target, 0, 0, 0)
    query = (Sandbox.select(Sandbox.profile, Sandbox.state, Sandbox.session_id.is_null().alias("free"),
                            peewee.fn.COUNT(Sandbox.id).alias("n"))
             .where((Sandbox.purpose == POOL) & Sandbox.state.in_((SandboxState.CREATING, SandboxState.RUNNING)))
             .group_by(Sandbox.profile, Sandbox.state, Sandbox.session_id.is_null()).dicts())
    for row in query:
        p = counts.setdefault(row["profile"], PoolProfile(row["profile"], 0, 0, 0, 0))
        if not row["free"]:
            p.claimed += row["n"]
        elif row["state"] == SandboxState.RUNNING:
            p.waiting += row["n"]
        else:
            p.starting += row["n"]
    return PoolStatus(enabled=target > 0, target=target, profiles=sorted(counts.values(), key=lambda p: p.profile))
