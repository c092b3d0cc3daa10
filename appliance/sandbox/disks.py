"""The one wrapper around qemu-img: copy-on-write overlays on read-only base images."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import ResourceExhausted, SandboxError


def free_mb(path: Path) -> int:
    return shutil.disk_usage(path).free // (1024 * 1024)


def ensure_free_space(path: Path, need_mb: int) -> None:
    have = free_mb(path)
    if have < need_mb:
        raise ResourceExhausted(
            f"only {have} MiB free under {path}; a sandbox needs at least {need_mb} MiB",
            hint="free disk space, destroy idle sandboxes ('appliance sandbox list'), or lower min_free_disk_mb",
        )


def ensure_traversable(path: Path) -> None:
    """qemu runs as an unprivileged user (libvirt-qemu): every directory above its files must let
    others through, or libvirt fails later with a bare 'Permission denied'."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise SandboxError(
                f"{parent} is not traversable by others, so qemu (user libvirt-qemu) cannot reach {path}",
                hint=f"chmod o+x {parent}, or put state_dir/image_dir somewhere world-traversable",
            )


def create_overlay(base: Path, overlay: Path, size_gb: int) -> None:
    """A qcow2 overlay backed by `base`, of virtual size `size_gb` (never smaller than the base)."""
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay), f"{size_gb}G"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as e:
        raise SandboxError("qemu-img is not installed", hint="apt-get install qemu-utils") from e
    if proc.returncode != 0:
        overlay.unlink(missing_ok=True)
        message = proc.stderr.strip()
        if "No space left" in message or "ENOSPC" in message:
            raise ResourceExhausted(f"disk full while creating the overlay in {overlay.parent}",
                                    hint="free disk space and try again")
        if "smaller than" in message or "cannot shrink" in message.lower():
            raise SandboxError(f"disk size {size_gb} GiB is smaller than the base image", hint="ask for a larger disk")
        raise SandboxError(f"qemu-img could not create the overlay: {message}")



def flatten_onto(overlay: Path, base: Path, dest: Path) -> None:
    """`dest`: a qcow2 with the same contents as `overlay` (whatever chain it sits on), backed by
    `base` directly: a copy of the overlay, then a safe rebase, which writes into it every cluster
    where the old chain differs from `base`. The overlay may be in use (its guest's file systems
    frozen): it is only read."""
    tmp = dest.with_name(dest.name + ".part")
    try:
        shutil.copyfile(overlay, tmp)
        proc = subprocess.run(["qemu-img", "rebase", "-U", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                               str(tmp)], capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            message = proc.stderr.strip()
            if "No space left" in message or "ENOSPC" in message:
                raise ResourceExhausted(f"disk full while saving a disk in {dest.parent}", hint="free disk space")
            raise SandboxError(f"qemu-img could not rebase {tmp}: {message}")
        tmp.rename(dest)
    finally:
        tmp.unlink(missing_ok=True)
