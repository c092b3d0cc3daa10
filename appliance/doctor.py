"""Health checks an admin asks about. Each check returns a Check; none raises."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import ApplianceError

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""


def _guard(name: str, fn) -> Check:
    try:
        return fn()
    except ApplianceError as e:
        return Check(name, FAIL, e.message, e.hint)
    except Exception as e:  # a doctor reports, it does not crash
        return Check(name, FAIL, f"{type(e).__name__}: {e}")


def check_config(cfg: Config) -> Check:
    return Check("config", OK, f"from {', '.join(cfg.source)}; state in {cfg.state_dir}")


def check_database(cfg: Config) -> Check:
    from .db import open_database

    db = open_database(cfg.database_url)
    with db.connection_context():
        db.execute_sql("SELECT 1")
    return Check("database", OK, cfg.database_url.split("://")[0] + " schema up to date")


def check_libvirt(hv) -> Check:
    v = hv.versions()
    return Check("libvirt", OK, f"libvirt {v['libvirt']}, qemu {v['hypervisor']}")


def check_kvm_device() -> Check:
    path = Path("/dev/kvm")
    if not path.exists():
        return Check("/dev/kvm", WARN, "absent: guests run under TCG (slower)")
    st = path.stat()
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    if group != "kvm" or not st.st_mode & stat.S_IRGRP:
        # libvirt then re-probes qemu's capabilities on every guest start (~40 s each here).
        return Check("/dev/kvm", FAIL, f"owned by group {group} mode {stat.S_IMODE(st.st_mode):o}",
                     "chgrp kvm /dev/kvm && chmod 660 /dev/kvm (what udev does on a normal Debian)")
    return Check("/dev/kvm", OK, f"group {group}, mode {stat.S_IMODE(st.st_mode):o}")


def check_accel(manager) -> Check:
    choice = manager.accel()
    return Check("acceleration", OK if choice.mode == "kvm" else WARN, f"{choice.mode}: {choice.reason}")


def check_image(cfg: Config) -> Check:
    from vmimages.store import ImageStore

    image = ImageStore(cfg.image_dir).get(cfg.default_profile)
    return Check("image", OK, f"{image.profile} {image.short_hash} built {image.built_at:%Y-%m-%d %H:%M}")


def check_disk(cfg: Config) -> Check:
    path = cfg.state_dir if cfg.state_dir.exists() else cfg.state_dir.parent
    free = shutil.disk_usage(path).free // (1024 * 1024)
    if free < cfg.min_free_disk_mb:
        return Check("disk", FAIL, f"{free} MiB free under {path}", "free disk space")
    return Check("disk", OK, f"{free} MiB free under {path}")


def check_nft() -> Check:
    try:
        out = subprocess.run(["nft", "--version"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return Check("nftables", FAIL, "nft not found", "apt-get install nftables")
    return Check("nftables", OK if out.returncode == 0 else FAIL, out.stdout.strip() or out.stderr.strip())


def check_bridge(cfg: Config) -> Check:
    if not Path(f"/sys/class/net/{cfg.bridge}/bridge").exists():
        return Check("bridge", WARN, f"{cfg.bridge} does not exist yet", "it is created by 'appliance serve' or the first sandbox")
    return Check("bridge", OK, f"{cfg.bridge} {cfg.bridge_address}/{cfg.network.prefixlen}")


def run_all(cfg: Config, hv, manager) -> list[Check]:
    checks = [
        _guard("config", lambda: check_config(cfg)),
        _guard("database", lambda: check_database(cfg)),
        _guard("libvirt", lambda: check_libvirt(hv)),
        _guard("/dev/kvm", check_kvm_device),
        _guard("image", lambda: check_image(cfg)),
        _guard("disk", lambda: check_disk(cfg)),
        _guard("nftables", check_nft),
        _guard("bridge", lambda: check_bridge(cfg)),
    ]
    libvirt_ok = all(c.status != FAIL for c in checks if c.name == "libvirt")
    if manager is not None and os.geteuid() == 0 and libvirt_ok:
        checks.append(_guard("acceleration", lambda: check_accel(manager)))
    return checks
