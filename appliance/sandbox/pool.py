"""The warm pool: guests of the default profile, cloned from its template ahead of time, paused,
waiting for a session, so a session's guest is running about a second after it asks.

A slot is a sandbox row with purpose "pool" (purpose "pool-fill" while it is being made, so nobody
claims a guest that is still starting or not yet paused). Its guest has its own identity (address,
MAC, tap, keys) from the start, and the egress policy "none". A claim turns the row into the
session's in one guarded UPDATE (only one claimer can match `purpose = 'pool'`), then swaps its nft
set elements to the session's policy (one nft transaction), resumes it and sets its clock. Anything
that fails destroys the slot and the session gets a guest the normal way.

After a crash, reconcile finds every slot as a live sandbox like any other: a claimed one still
paused is resumed, a half-made one ("pool-fill" at start) is destroyed by `discard_unfinished`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from netpolicy.allowlist import Policy

from ..db import database
from ..errors import ApplianceError
from ..hostmem import free_memory_mb
from ..models import Sandbox, SandboxState, on_host

log = logging.getLogger(__name__)

SLOT = "pool"
FILLING = "pool-fill"
RETIRING = "pool-retire"  # a slot being destroyed because it no longer fits
REFILL_INTERVAL = 30.0  # seconds between looks at the pool when nothing woke it
FAILURE_BACKOFF = 120.0  # after a slot could not be made: wait this long before the next try


@dataclass(frozen=True)
class SlotShape:
    """What a slot must be to serve a request: the same image version and guest size."""

    profile: str
    image_dir: str
    vcpus: int
    memory_mb: int
    disk_gb: int


def take_slot(shape: SlotShape, session_id: str | None, policy: Policy, host: str | None = None) -> Sandbox | None:
    """Make one waiting slot of `shape` the session's, or None if there is none. The UPDATE's
    `purpose = 'pool'` guard is what makes a slot serve exactly one claimer, in any process."""
    candidates = (Sandbox.select(Sandbox.id)
                  .where((Sandbox.purpose == SLOT) & (Sandbox.state == SandboxState.RUNNING)
                         & (Sandbox.profile == shape.profile) & (Sandbox.image_dir == shape.image_dir)
                         & (Sandbox.vcpus == shape.vcpus) & (Sandbox.memory_mb == shape.memory_mb)
                         & (Sandbox.disk_gb == shape.disk_gb)
                         & on_host(host))
                  .order_by(Sandbox.created_at))
    for candidate in list(candidates):
        taken = Sandbox.update(purpose="session", session_id=session_id, network_policy=policy.to_dict()).where(
            (Sandbox.id == candidate.id) & (Sandbox.purpose == SLOT) & (Sandbox.state == SandboxState.RUNNING)
        ).execute()
        if taken == 1:
            return Sandbox.get_by_id(candidate.id)
    return None


class WarmPool:
    def __init__(self, manager):
        self.manager = manager
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_at = 0.0

    @property
    def config(self):
        return self.manager.config

    @property
    def host(self) -> str | None:
        return self.config.appliance_host

    def size(self) -> int:
        return self.config.warm_pool_size(free_memory_mb())

    def default_shape(self) -> SlotShape | None:
        """The shape of the slots this host keeps: the default profile at the default size."""
        cfg = self.config
        try:
            image = self.manager.image_store().get(cfg.default_profile)
        except ApplianceError:
            return None
        disk_gb = max(cfg.disk_gb, int(image.manifest.get("disk_size_gib") or 0))
        return SlotShape(cfg.default_profile, str(image.dir), cfg.vcpus, cfg.memory_mb, disk_gb)

    # -- claim ------------------------------------------------------------------------------------
    def claim(self, shape: SlotShape, session_id: str | None, policy: Policy) -> Sandbox | None:
        """A running guest of `shape` with `policy` in force, or None (the caller makes one)."""
        started = time.monotonic()
        while True:
            slot = take_slot(shape, session_id, policy, self.host)
            if slot is None:
                return None
            self._wake.set()  # one fewer waiting: refill
            try:
                self._hand_over(slot, policy)
            except Exception as e:  # this slot is broken: destroy it, try the next
                reason = e.message if isinstance(e, ApplianceError) else f"{type(e).__name__}: {e}"
                log.warning("pool slot %s could not be handed to session %s (%s); destroying it", slot.id,
                            session_id, reason)
                self._destroy(slot.id)
                continue
            log.info("sandbox %s claimed from the warm pool for %s in %.2f s", slot.id, session_id,
                     time.monotonic() - started)
            return Sandbox.get_by_id(slot.id)

    def _hand_over(self, slot: Sandbox, policy: Policy) -> None:
        m = self.manager
        # the session's policy before the guest runs another instruction (one nft transaction)
        m.egress.attach(slot.id, slot.address, slot.tap, policy, session_id=slot.session_id, mac=slot.mac)
        if m.hv.is_paused(slot.domain_name):
            m.hv.resume(slot.domain_name)
        elif not m.hv.is_running(slot.domain_name):
            raise ApplianceError(f"the guest of pool slot {slot.id} is gone")
        m.hv.set_guest_time(slot.domain_name)  # it slept for as long as it waited

    # -- refill -----------------------------------------------------------------------------------
    def refill(self) -> list[str]:
        """One pass: destroy slots that no longer fit (new image, new size, pool made smaller), then
        make slots until the pool has its size. Returns the ids made."""
        shape = self.default_shape()
        want = self.size() if shape is not None else 0
        waiting = list(Sandbox.select().where(
            (Sandbox.purpose == SLOT) & Sandbox.state.in_(SandboxState.LIVE)
            & on_host(self.host)).order_by(Sandbox.created_at))
        # clones of a template that was dropped or replaced go too: the pool offers the current one
        current = self.manager.templates().current_generations()
        fitting = [s for s in waiting if shape is not None and _shape_of(s) == shape
                   and (s.template_key is None or s.template_key in current)]
        for stale in [s for s in waiting if s not in fitting] + fitting[want:]:
            # guarded like a claim: a slot a session took a moment ago is the session's now
            if Sandbox.update(purpose=RETIRING).where((Sandbox.id == stale.id) & (Sandbox.purpose == SLOT)).execute():
                self._destroy(stale.id)
        made = []
        for _ in range(max(0, want - len(fitting))):
            if self._stop.is_set():
                break
            made.append(self.fill_one())
        return made

    def fill_one(self) -> str:
        """Make one slot: a guest (cloned when templates work), ready, paused, then offered."""
        from .manager import SandboxRequest

        sandbox = self.manager.create(SandboxRequest(purpose=FILLING, network=Policy.make("none")), wait=True)
        try:
            self.manager.hv.pause(sandbox.domain_name)
        except ApplianceError:
            self._destroy(sandbox.id)
            raise
        Sandbox.update(purpose=SLOT).where((Sandbox.id == sandbox.id) & (Sandbox.purpose == FILLING)).execute()
        log.info("pool slot %s ready (%s)", sandbox.id, "cloned" if sandbox.template_key else "cold-booted")
        return sandbox.id

    def discard_unfinished(self) -> list[str]:
        """Slots this host was making when it last stopped: nobody finishes them."""
        gone = []
        for row in Sandbox.select().where(Sandbox.purpose.in_((FILLING, RETIRING)) & Sandbox.state.in_(SandboxState.LIVE)
                                          & on_host(self.host)):
            self._destroy(row.id)
            gone.append(row.id)
        return gone

    def _destroy(self, sandbox_id: str) -> None:
        try:
            self.manager.destroy(sandbox_id)
        except ApplianceError as e:
            log.warning("pool: %s", e.message)

    # -- the background thread --------------------------------------------------------------------
    def start(self) -> None:
        with database.connection_context():
            gone = self.discard_unfinished()
        if gone:
            log.info("pool: removed slots left half-made: %s", ", ".join(gone))
        self._thread = threading.Thread(target=self._loop, name="warm-pool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.ready_timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() - self._failed_at > FAILURE_BACKOFF:
                try:
                    with database.connection_context():
                        self.refill()
                except Exception as e:  # the next pass tries again; sessions cold-start meanwhile
                    self._failed_at = time.monotonic()
                    reason = e.message if isinstance(e, ApplianceError) else f"{type(e).__name__}: {e}"
                    log.warning("pool: could not make a slot (%s); trying again in %.0f s", reason, FAILURE_BACKOFF)
            self._wake.wait(REFILL_INTERVAL)
            self._wake.clear()


def _shape_of(sandbox: Sandbox) -> SlotShape:
    return SlotShape(sandbox.profile, sandbox.image_dir, sandbox.vcpus, sandbox.memory_mb, sandbox.disk_gb)
