"""The state directory's permissions: qemu may pass through it, nobody else may look inside.

qemu runs as libvirt-qemu and opens the overlays under `sandboxes/`, the images under `images/`
(the default image_dir), the templates' disks under `templates/`, the environment caches' disks
under `envcache/` (each file 0600, libvirt-qemu's) and the accel probe's files under `probe/`, so
the state dir itself must let others through (0711: traversable, not listable). Everything else in it — the database, git
mirrors and credentials' helpers, transcripts — is the appliance's alone: go-rwx at the top level
protects whatever lies below.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

QEMU_REACHES = frozenset({"sandboxes", "images", "probe", "templates", "envcache"})  # top-level entries qemu opens files under


def protect(state_dir: Path) -> list[str]:
    """Make `state_dir` 0711 and every other top-level entry private; returns what was tightened."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o711)
    tightened = []
    for entry in state_dir.iterdir():
        if entry.name in QEMU_REACHES or entry.is_symlink():
            continue
        mode = stat.S_IMODE(entry.stat().st_mode)
        if mode & 0o077:
            os.chmod(entry, mode & 0o700)
            tightened.append(entry.name)
    return tightened
