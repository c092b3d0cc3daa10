"""The per-sandbox policy table: source address -> sandbox, session and policy.

One writer (the daemon, through netpolicy.service) and several readers in other processes (the
mitmdump child, the resolver). The table is one JSON file, replaced atomically (write a temporary
file in the same directory, fsync, rename), so a reader sees either the old or the new table,
never half of one. Readers stat the file on every lookup and reload when its identity (inode,
mtime, size) changed: a change is visible to the next request without any signalling.

An address with no entry has no policy: every caller treats that as "deny" (fail closed), and so
does a table file that is missing or unreadable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from .allowlist import Policy, PolicyError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SandboxPolicy:
    """One live sandbox as the egress layer sees it."""

    sandbox_id: str
    address: str  # IPv4 on the appliance bridge
    tap: str
    policy: Policy
    session_id: str | None = None
    mac: str | None = None  # the guest's MAC, bound to its tap at the bridge

    def __post_init__(self):
        try:
            ipaddress.IPv4Address(self.address)
        except ValueError as e:
            raise PolicyError(f"sandbox {self.sandbox_id}: {self.address!r} is not an IPv4 address") from e

    def to_dict(self) -> dict:
        return {
            "sandbox_id": self.sandbox_id,
            "address": self.address,
            "tap": self.tap,
            "session_id": self.session_id,
            "mac": self.mac,
            "policy": self.policy.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SandboxPolicy:
        return cls(
            sandbox_id=data["sandbox_id"],
            address=data["address"],
            tap=data["tap"],
            policy=Policy.from_dict(data["policy"]),
            session_id=data.get("session_id"),
            mac=data.get("mac"),
        )


class PolicyTable:
    """The table behind one file. Writers: put/remove/replace_all. Readers: lookup/entries."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_id: dict[str, SandboxPolicy] = {}
        self._by_address: dict[str, SandboxPolicy] = {}
        self._handle = None

    # --- reading -------------------------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._set({}, None)
            return
        if (st.st_ino, st.st_mtime_ns, st.st_size) == self._stamp:
            return
        entries: dict[str, SandboxPolicy] = {}
        stamp = None
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            self._set({}, None)
            return
        try:
            fst = os.fstat(f.fileno())
            stamp = (fst.st_ino, fst.st_mtime_ns, fst.st_size)
            data = json.loads(f.read())
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"unknown format version {data.get('version')!r}")
            entries = {e["sandbox_id"]: SandboxPolicy.from_dict(e) for e in data["sandboxes"]}
        except (OSError, ValueError, KeyError, TypeError, PolicyError) as e:
            # Fail closed: an unreadable table allows nothing.
            log.error("policy table %s unreadable, denying everything: %s", self.path, e)
            entries = {}
        self._set(entries, stamp, f)

    def _set(self, entries: dict[str, SandboxPolicy], stamp, handle=None) -> None:
        # Holding the loaded file open keeps its inode from being reused by a later version, so
        # an inode change always means a new table, however fast the writes come.
        if self._handle is not None and self._handle is not handle:
            self._handle.close()
        self._handle = handle
        self._by_id = entries
        self._by_address = {e.address: e for e in entries.values()}
        self._stamp = stamp

    def lookup(self, address: str) -> SandboxPolicy | None:
        """The sandbox whose address this is, or None (deny)."""
        with self._lock:
            self._refresh()
            return self._by_address.get(address)

    def get(self, sandbox_id: str) -> SandboxPolicy | None:
        with self._lock:
            self._refresh()
            return self._by_id.get(sandbox_id)

    def entries(self) -> list[SandboxPolicy]:
        with self._lock:
            self._refresh()
            return sorted(self._by_id.values(), key=lambda e: e.sandbox_id)

    # --- writing -------------------------------------------------------------------------------

    def put(self, entry: SandboxPolicy) -> SandboxPolicy | None:
        """Add or replace one sandbox's entry; return the entry it replaced, if any.

        An address belongs to at most one sandbox: another sandbox's stale entry on the same
        address is dropped.
        """
        with self._lock:
            self._refresh()
            entries = {k: v for k, v in self._by_id.items() if v.address != entry.address or k == entry.sandbox_id}
            old = entries.get(entry.sandbox_id)
            entries[entry.sandbox_id] = entry
            self._write(entries)
            return old

    def remove(self, sandbox_id: str) -> SandboxPolicy | None:
        with self._lock:
            self._refresh()
            entries = dict(self._by_id)
            old = entries.pop(sandbox_id, None)
            if old is not None:
                self._write(entries)
            return old

    def replace_all(self, new: Iterable[SandboxPolicy]) -> None:
        entries: dict[str, SandboxPolicy] = {}
        seen: dict[str, str] = {}
        for e in new:
            if e.address in seen and seen[e.address] != e.sandbox_id:
                raise PolicyError(f"address {e.address} given to both {seen[e.address]} and {e.sandbox_id}")
            seen[e.address] = e.sandbox_id
            entries[e.sandbox_id] = e
        with self._lock:
            self._write(entries)

    def _write(self, entries: dict[str, SandboxPolicy]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": FORMAT_VERSION,
            "sandboxes": [entries[k].to_dict() for k in sorted(entries)],
        }
        fd, tmp = tempfile.mkstemp(prefix=".policy-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        f = open(self.path, "rb")
        st = os.fstat(f.fileno())
        self._set(entries, (st.st_ino, st.st_mtime_ns, st.st_size), f)

    def close(self) -> None:
        with self._lock:
            self._set({}, None)
