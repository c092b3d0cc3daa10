"""The environment cache (what the product calls its setup cache): once a fresh guest's checkout,
the environment's setup script and SessionStart hooks have succeeded, the guest's disk is saved;
the next session of that environment starts from it — the checkout and whatever setup made are
there — and only fetches the new commits.

A cache's key is everything that made its disk: the environment, its setup script, its `.env`, its
network policy, the image version, the guest's size and user, and the repository. A session whose
key matches a ready cache starts from it; a new cache of an environment replaces the older ones,
and a cache older than `environment_cache_days` is dropped. Dropped caches' files go once no live
sandbox's disk is backed by them (`sweep`, from reconcile).

The disk is saved with the guest's file systems frozen (guest agent), after the session's git
credential and machine-id were moved off it (to /run, a tmpfs): the next guest gets its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
from datetime import timedelta
from pathlib import Path

from appliance_base.config import Config

from ..db import utcnow
from ..environments.models import CacheState, EnvironmentCache
from ..errors import ApplianceError, NotFound
from ..models import Sandbox, SandboxState
from ..sandbox import disks
from .models import Session

log = logging.getLogger(__name__)

DISK = "disk.qcow2"
KEPT_ASIDE = "/run/appliance-cache-aside"  # tmpfs: what must not be in the saved disk waits here


class EnvironmentCaches:
    def __init__(self, config: Config, sandboxes):
        self.config = config
        self.sandboxes = sandboxes

    @property
    def root(self) -> Path:
        return self.config.state_dir / "envcache"

    @property
    def host(self) -> str:
        return self.config.appliance_host or ""

    def disk(self, cache: EnvironmentCache) -> Path:
        return self.root / str(cache.id) / DISK

    # -- which cache ------------------------------------------------------------------------------
    def key(self, session: Session) -> str | None:
        """The cache key of the session's fresh guest, or None when it has nothing worth keeping (no
        environment, no setup script) or the cache is off."""
        snap = session.environment_snapshot
        if self.config.environment_cache != "on" or session.environment_id is None:
            return None
        if not (snap.get("setup_script") or "").strip():
            return None
        try:
            image = self.sandboxes.image_store().get(snap.get("profile") or self.config.default_profile)
        except ApplianceError:
            return None
        made_of = {
            "environment": session.environment_id, "setup_script": snap.get("setup_script"),
            "variables": snap.get("variables") or {}, "network": [snap.get("network_level"), snap.get("domains"),
                                                                  snap.get("include_defaults")],
            "image": str(image.dir), "vcpus": snap.get("vcpus") or self.config.vcpus,
            "memory_mb": snap.get("memory_mb") or self.config.memory_mb,
            "disk_gb": snap.get("disk_gb") or 0, "guest_user": self.config.guest_user,
            "repository": session.repository.name,
        }
        return hashlib.sha256(json.dumps(made_of, sort_keys=True, default=str).encode()).hexdigest()

    def find(self, session: Session) -> EnvironmentCache | None:
        """The ready cache this session's fresh guest can start from, or None."""
        key = self.key(session)
        if key is None:
            return None
        fresh_after = utcnow() - timedelta(days=self.config.environment_cache_days)
        cache = (EnvironmentCache.select()
                 .where((EnvironmentCache.key == key) & (EnvironmentCache.state == CacheState.READY)
                        & (EnvironmentCache.host == self.host) & (EnvironmentCache.created_at > fresh_after))
                 .order_by(EnvironmentCache.created_at.desc()).first())
        if cache is None or not self.disk(cache).exists():
            return None
        return cache

    def used(self, cache: EnvironmentCache) -> None:
        EnvironmentCache.update(uses=EnvironmentCache.uses + 1, last_used_at=utcnow()).where(
            EnvironmentCache.id == cache.id).execute()

    # -- keep a guest's disk ----------------------------------------------------------------------
    def capture(self, session: Session, sandbox: Sandbox, aside: list[str], base_sha: str | None) -> EnvironmentCache | None:
        """Save `sandbox`'s disk as the cache of `session`'s key (its setup has just succeeded).
        `aside`: guest paths that must not be in the saved disk (the session's credential). Returns
        the new cache, or None when there is nothing to keep or one exists already. A failure is
        logged and recorded on the row; the session goes on either way."""
        key = self.key(session)
        if key is None or self.find(session) is not None:
            return None
        cache = EnvironmentCache.create(key=key, environment=session.environment_id, repository=session.repository.name,
                                        image_dir=sandbox.image_dir, host=self.host, base_sha=base_sha,
                                        source_session=session.id)
        target = self.root / str(cache.id)
        try:
            self.root.mkdir(mode=0o711, exist_ok=True)  # qemu reaches the disk: it backs guests' overlays
            target.mkdir(mode=0o711)
            self._save_disk(sandbox, aside, target / DISK)
            # the checkout, what setup made and the environment's .env: for qemu (it opens the file) only
            os.chmod(target / DISK, 0o600)
            shutil.chown(target / DISK, user="libvirt-qemu")
        except Exception as e:  # the session runs on; the next fresh guest of this environment sets up again
            reason = e.message if isinstance(e, ApplianceError) else f"{type(e).__name__}: {e}"
            log.warning("environment cache of session %s not kept: %s", session.id, reason)
            EnvironmentCache.update(state=CacheState.FAILED, error=reason[:2000]).where(
                EnvironmentCache.id == cache.id).execute()
            shutil.rmtree(target, ignore_errors=True)
            return None
        EnvironmentCache.update(state=CacheState.READY, size_bytes=_allocated(target / DISK)).where(
            EnvironmentCache.id == cache.id).execute()
        # the environment's older caches are stale now (another key: their inputs changed)
        EnvironmentCache.update(state=CacheState.DROPPED).where(
            (EnvironmentCache.environment == session.environment_id) & (EnvironmentCache.id != cache.id)
            & (EnvironmentCache.host == self.host) & (EnvironmentCache.state == CacheState.READY)).execute()
        log.info("environment cache %d kept from session %s (%d MiB)", cache.id, session.id,
                 _allocated(target / DISK) // (1 << 20))
        return EnvironmentCache.get_by_id(cache.id)

    def _save_disk(self, sandbox: Sandbox, aside: list[str], dest: Path) -> None:
        hv, name = self.sandboxes.hv, sandbox.domain_name
        q = shlex.quote
        move_out = " ; ".join(f"[ -e {q(p)} ] && mkdir -p {KEPT_ASIDE}{q(str(Path(p).parent))} && "
                              f"mv {q(p)} {KEPT_ASIDE}{q(p)}" for p in aside)
        move_back = " ; ".join(f"[ -e {KEPT_ASIDE}{q(p)} ] && mv {KEPT_ASIDE}{q(p)} {q(p)}" for p in aside)
        # an empty machine-id makes the next boot from this disk (a template of it) make a new one
        code, out, err = hv.agent_exec(name, ["/bin/sh", "-c", f"{move_out} ; mkdir -p {KEPT_ASIDE} && "
                                              f"cp /etc/machine-id {KEPT_ASIDE}/machine-id && : > /etc/machine-id"],
                                       timeout=60)
        if code != 0:
            raise ApplianceError(f"could not prepare the guest's disk to be kept: {(err or out)[-300:]}")
        try:
            hv.freeze_filesystems(name)
            try:
                image_disk = Path(sandbox.image_dir) / DISK
                disks.flatten_onto(self.sandboxes.files(sandbox).overlay, image_disk, dest)
            finally:
                hv.thaw_filesystems(name)
        finally:
            hv.agent_exec(name, ["/bin/sh", "-c", f"{move_back} ; cp {KEPT_ASIDE}/machine-id /etc/machine-id"],
                          timeout=60)

    # -- housekeeping -----------------------------------------------------------------------------
    def sweep(self) -> list[int]:
        """Drop caches past `environment_cache_days`; remove the files of caches that are dropped,
        failed or gone, unless a live sandbox's disk is backed by them. Returns the ids removed."""
        too_old = utcnow() - timedelta(days=self.config.environment_cache_days)
        EnvironmentCache.update(state=CacheState.DROPPED).where(
            (EnvironmentCache.host == self.host) & (EnvironmentCache.state == CacheState.READY)
            & (EnvironmentCache.created_at <= too_old)).execute()
        if not self.root.is_dir():
            return []
        in_use = {s.env_cache_id for s in Sandbox.select(Sandbox.env_cache_id).where(
            Sandbox.state.in_(SandboxState.LIVE) & Sandbox.env_cache_id.is_null(False))}
        keep = {c.id for c in EnvironmentCache.select(EnvironmentCache.id).where(
            EnvironmentCache.state.in_((CacheState.READY, CacheState.BUILDING)))} | in_use
        removed = []
        for entry in self.root.iterdir():
            if entry.is_dir() and entry.name.isdigit() and int(entry.name) not in keep:
                cache_id = int(entry.name)
                # its templates (made from its disk; keyed as in SandboxManager.create) go with it
                self.sandboxes.templates().drop_for_image(f"+env{cache_id}")
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(cache_id)
        if removed:
            log.info("environment caches removed: %s", ", ".join(map(str, removed)))
        return removed


def view(c: EnvironmentCache) -> dict:
    """What admins see of a cache (CLI, API, console)."""
    return {"id": c.id, "environment": c.environment.name, "owner": c.environment.owner.username,
            "repository": c.repository, "state": c.state, "created_at": c.created_at.isoformat() + "Z",
            "last_used_at": c.last_used_at and c.last_used_at.isoformat() + "Z", "uses": c.uses,
            "size_bytes": c.size_bytes, "base_sha": c.base_sha, "host": c.host, "error": c.error}


def list_caches(include_dropped: bool = False) -> list[EnvironmentCache]:
    query = EnvironmentCache.select().order_by(EnvironmentCache.created_at.desc())
    if not include_dropped:
        query = query.where(EnvironmentCache.state.in_((CacheState.READY, CacheState.BUILDING, CacheState.FAILED)))
    return list(query)


def drop_cache(cache_id: int) -> EnvironmentCache:
    """No session starts from it any more; its files go at the next reconcile once no guest uses them."""
    if EnvironmentCache.get_or_none(EnvironmentCache.id == cache_id) is None:
        raise NotFound(f"no environment cache {cache_id}", hint="see 'appliance envcache list'")
    EnvironmentCache.update(state=CacheState.DROPPED).where(EnvironmentCache.id == cache_id).execute()
    return EnvironmentCache.get_by_id(cache_id)


def _allocated(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0
