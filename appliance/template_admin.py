"""What admins see and do about warm starts: the guest templates (rows, their files on this host,
the bytes they take, the live sandboxes cloned from each), dropping one, and the warm pool's slots.

The template code (appliance/sandbox/templates.py) writes the `GuestTemplate` rows (one per host
and key) and the files, one directory per build ("generation") of a key; this module only reads
them, except `drop_template`: the row becomes `dropped` and the RAM/state directories of every
generation go at once, so no new clone starts from them (the next guest of that image and size
makes a new template). Clones already running keep their copy of the RAM (each maps the file
privately: an unlinked file stays until they end). A generation's disk backs its clones' overlays,
so it stays until no live sandbox names it (reconcile's sweep removes it then).

    <template_dir>/<key>-<generation>/           RAM file and saved device state (tmpfs)
    <state_dir>/templates/<key>-<generation>/    the template's disk, the clones' backing file
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
from .hostmem import free_memory_mb
from .models import GuestTemplate, Sandbox, SandboxState, TemplateState
from .sandbox import pool

_KEY = re.compile(r"^[A-Za-z0-9_]{1,64}$")  # TemplateKey.id is 16 hex digits: never a path, never a glob


def ram_dirs(config: Config, key: str) -> list[Path]:
    """The RAM file and saved state directories of every generation of `key` (on `template_dir`)."""
    return _generations(Path(config.template_dir), key)


def disk_dirs(config: Config, key: str) -> list[Path]:
    """The disk directories (the clones' backing files) of every generation of `key`."""
    return _generations(config.state_dir / "templates", key)


def _generations(root: Path, key: str) -> list[Path]:
    if not _KEY.match(key) or not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{key}-*") if p.is_dir() and p.parent == root)


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
    return host == "" or host == config.this_host


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
    """A generation of `key` that a clone can start from (the template code's own test)."""
    disks = {d.name for d in disk_dirs(config, key) if (d / "disk.qcow2").exists() and (d / "template.json").exists()}
    return any((r / "ram").exists() and (r / "state").exists() for r in ram_dirs(config, key) if r.name in disks)


def _users(key: str, host: str) -> int:
    """Live sandboxes backed by a generation of `key` (their template_key is `<key>-<generation>`)."""
    on_host = (Sandbox.host.is_null() | (Sandbox.host == "")) if host == "" else (Sandbox.host == host)
    named = Sandbox.template_key.startswith(f"{key}-") | (Sandbox.template_key == key)
    return Sandbox.select().where(named & Sandbox.state.in_(SandboxState.LIVE) & on_host).count()


def _view(config: Config, row: GuestTemplate) -> TemplateView:
    here = _here(config, row.host)
    size = sum(_allocated_bytes(d) for d in ram_dirs(config, row.key) + disk_dirs(config, row.key)) if here else 0
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
    """Drop template `key`: its rows become `dropped` and the RAM directories of its generations on
    this host go now. Dropping a dropped template again only removes what is left of them."""
    rows = list(GuestTemplate.select().where(GuestTemplate.key == key)) if _KEY.match(key or "") else []
    if not rows:
        raise NotFound(f"no guest template {key!r}", hint="`appliance template list` shows the templates and keys")
    GuestTemplate.update(state=TemplateState.DROPPED).where(GuestTemplate.key == key).execute()
    for ram in ram_dirs(config, key):  # only `<key>-*` right under template_dir (checked there)
        shutil.rmtree(ram, ignore_errors=True)
    here = [r for r in rows if _here(config, r.host)] or rows
    return _view(config, GuestTemplate.get_by_id(here[0].id))


@dataclass
class PoolProfile:
    profile: str
    target: int  # slots the pool keeps ready for this profile
    waiting: int  # ready, paused, for the next session to claim (a claimed slot is that session's guest)
    starting: int  # being cloned (a refill)
    retiring: int  # being destroyed (no longer fits: a new image or size, a smaller pool)

    @property
    def slots(self) -> int:
        return self.waiting + self.starting + self.retiring


@dataclass
class PoolStatus:
    enabled: bool
    target: int  # slots the pool keeps for the default profile (0: no pool)
    profiles: list[PoolProfile]

    def to_dict(self) -> dict:
        return {"enabled": self.enabled, "target": self.target,
                "profiles": [{**asdict(p), "slots": p.slots} for p in self.profiles]}


def pool_status(config: Config, available_mb: int | None = None) -> PoolStatus:
    """The warm pool's live slots per profile, on every host (the default profile always listed when
    a pool is kept), and its size as the pool computes it (`available_mb`: the host's free memory)."""
    target = config.warm_pool_size(free_memory_mb() if available_mb is None else available_mb)
    counts: dict[str, PoolProfile] = {}
    if target:
        counts[config.default_profile] = PoolProfile(config.default_profile, target, 0, 0, 0)
    field = {pool.SLOT: "waiting", pool.FILLING: "starting", pool.RETIRING: "retiring"}
    query = (Sandbox.select(Sandbox.profile, Sandbox.purpose, peewee.fn.COUNT(Sandbox.id).alias("n"))
             .where(Sandbox.purpose.in_(list(field)) & Sandbox.state.in_(SandboxState.LIVE))
             .group_by(Sandbox.profile, Sandbox.purpose).dicts())
    for row in query:
        p = counts.setdefault(row["profile"], PoolProfile(row["profile"], 0, 0, 0, 0))
        setattr(p, field[row["purpose"]], getattr(p, field[row["purpose"]]) + row["n"])
    return PoolStatus(enabled=target > 0, target=target, profiles=sorted(counts.values(), key=lambda p: p.profile))
