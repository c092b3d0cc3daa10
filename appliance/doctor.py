"""Health checks an admin asks about. Each check returns a Check; none raises."""

from __future__ import annotations

import grp
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from appliance_base.config import Config
from netpolicy.nft import Nft, NftError

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
        return Check("nftables", OK, Nft(timeout=10).version())
    except NftError as e:
        return Check("nftables", FAIL, e.message, e.hint or "apt-get install nftables")


def check_bridge(cfg: Config) -> Check:
    if not Path(f"/sys/class/net/{cfg.bridge}/bridge").exists():
        return Check("bridge", WARN, f"{cfg.bridge} does not exist yet", "it is created by 'appliance serve' or the first sandbox")
    return Check("bridge", OK, f"{cfg.bridge} {cfg.bridge_address}/{cfg.network.prefixlen}")


def check_templates(cfg: Config, mounts: Path = Path("/proc/mounts")) -> Check:
    """Guest templates keep each template's RAM in a file under template_dir: a tmpfs, with room."""
    if not cfg.templated:
        return Check("guest templates", OK, "off: guests cold-boot (guest_templates = on starts them from a template)")
    where = Path(cfg.template_dir)
    probe = where if where.exists() else where.parent
    if not probe.exists():
        return Check("guest templates", FAIL, f"{where.parent} does not exist",
                     "set template_dir to a directory on a tmpfs, e.g. /dev/shm/appliance-templates")
    fs = _filesystem_of(probe, mounts)
    free = shutil.disk_usage(probe).free // (1024 * 1024)
    if free < cfg.memory_mb:
        return Check("guest templates", FAIL, f"{free} MiB free under {probe}: a template of {cfg.memory_mb} MiB "
                     "does not fit, so guests cold-boot", "make the tmpfs larger or lower memory_mb")
    if fs != "tmpfs":
        return Check("guest templates", WARN, f"{probe} is on {fs or 'an unknown file system'}, not tmpfs: clones "
                     "read their RAM from disk", "put template_dir on a tmpfs (e.g. /dev/shm)")
    return Check("guest templates", OK, f"on: RAM files under {where} (tmpfs, {free} MiB free)")


QEMU_USER = "libvirt-qemu"
APPARMOR_ENABLED = Path("/sys/module/apparmor/parameters/enabled")
LIBVIRT_QEMU_CONF = Path("/etc/libvirt/qemu.conf")
# every libvirt guest's profile includes abstractions/libvirt-qemu, which includes this local file
APPARMOR_LOCAL_RULES = Path("/etc/apparmor.d/local/abstractions/libvirt-qemu")


def check_template_access(cfg: Config, qemu_user: str = QEMU_USER) -> Check:
    """qemu (libvirt-qemu) must reach template_dir: every directory above it traversable; the
    daemon makes one directory per template in it and gives it to qemu."""
    import pwd

    from .sandbox import disks

    name = "template dir access"
    if not cfg.templated:
        return Check(name, OK, "guest templates are off")
    where = Path(cfg.template_dir)
    if not where.exists():
        return Check(name, WARN, f"{where} does not exist yet (the first template makes it)",
                     "scripts/install makes it at every boot (systemd-tmpfiles --create /etc/tmpfiles.d/appliance.conf)")
    disks.ensure_traversable(where)  # SandboxError: FAIL, with the chmod to run
    st = where.stat()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    if owner not in (qemu_user, "root"):
        return Check(name, WARN, f"{where} is owned by {owner}", f"chown {qemu_user} {where}")
    return Check(name, OK, f"{where} owned by {owner}, mode {stat.S_IMODE(st.st_mode):o}, traversable by {qemu_user}")


def _security_drivers(qemu_conf: Path) -> list[str] | None:
    """libvirt's `security_driver` setting in qemu.conf (None: unset, libvirt picks what the host has)."""
    import re

    if not qemu_conf.exists():
        return None
    for line in qemu_conf.read_text(errors="replace").splitlines():
        m = re.match(r"\s*security_driver\s*=\s*(.+)", line)
        if m:
            return re.findall(r'"([^"]*)"', m.group(1))
    return None


def apparmor_allows(rules: str, directory: str) -> bool:
    """A rule in `rules` (AppArmor profile text) lets qemu read and write everything under `directory`."""
    import re

    path = re.escape(directory.rstrip("/"))
    for line in rules.splitlines():
        m = re.match(rf'\s*(?:"{path}/\*\*"|{path}/\*\*)\s+([a-z]+)\s*,', line)
        if m and "r" in m.group(1) and "w" in m.group(1):
            return True
    return False


def check_template_apparmor(cfg: Config, enabled: Path = APPARMOR_ENABLED, qemu_conf: Path = LIBVIRT_QEMU_CONF,
                            local_rules: Path = APPARMOR_LOCAL_RULES) -> Check:
    """Where AppArmor confines qemu, the guests' profile must allow template_dir (the RAM files are
    a qemu command-line object: libvirt's per-guest profile does not list them)."""
    name = "template AppArmor"
    if not cfg.templated:
        return Check(name, OK, "guest templates are off")
    if not enabled.exists() or enabled.read_text().strip() != "Y":
        return Check(name, OK, "AppArmor is not enabled on this host: nothing confines qemu's files")
    drivers = _security_drivers(qemu_conf)
    if drivers is not None and "apparmor" not in drivers:
        return Check(name, OK, f"libvirt's security driver is {', '.join(drivers) or 'none'}, not AppArmor")
    rules = local_rules.read_text(errors="replace") if local_rules.exists() else ""
    if not apparmor_allows(rules, cfg.template_dir):
        return Check(name, FAIL, f"AppArmor confines qemu and {local_rules} has no rule for {cfg.template_dir}: "
                     "templated guests cannot open their RAM file, so guests cold-boot",
                     f'run scripts/install again, or add the line "{cfg.template_dir.rstrip("/")}/**" rwk, '
                     f"to {local_rules} (new guests pick it up; no reload needed)")
    return Check(name, OK, f"qemu may use {cfg.template_dir} ({local_rules})")


def check_template_failures(cfg: Config) -> Check:
    """The newest template that could not be made, unless one was made since: why guests cold-boot."""
    from .db import open_database
    from .template_admin import newest_failure

    name = "template builds"
    if not cfg.templated:
        return Check(name, OK, "guest templates are off: guests cold-boot")
    db = open_database(cfg.database_url)
    with db.connection_context():
        failed = newest_failure()
    if failed is None:
        return Check(name, OK, "no failed template since the last one made")
    return Check(name, WARN, f"template {failed.key} ({failed.profile}) failed {failed.created_at:%Y-%m-%d %H:%M} UTC, "
                 f"guests cold-boot: {failed.error or 'no reason recorded'}",
                 "fix what it says; `appliance template list` shows the templates")


def _filesystem_of(path: Path, mounts: Path) -> str:
    """The type of the file system `path` is on (the longest mount point above it)."""
    best, kind = "", ""
    real = str(path.resolve())
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1].replace("\\040", " ")
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


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
        _guard("guest templates", lambda: check_templates(cfg)),
    ]
    if cfg.templated:  # off: the line above says guests cold-boot, nothing more to check
        checks += [_guard("template dir access", lambda: check_template_access(cfg)),
                   _guard("template AppArmor", lambda: check_template_apparmor(cfg)),
                   _guard("template builds", lambda: check_template_failures(cfg))]
    libvirt_ok = all(c.status != FAIL for c in checks if c.name == "libvirt")
    if manager is not None and os.geteuid() == 0 and libvirt_ok:
        checks.append(_guard("acceleration", lambda: check_accel(manager)))
    checks.extend(run_services(cfg))
    return checks


# -- services and host (appended for operations) ------------------------------------------------------

def _tcp(host: str, port: int, timeout: float = 2.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_daemon(cfg: Config, host: str | None = None) -> Check:
    """`appliance serve` answering /healthz where it is configured to listen."""
    import json
    import urllib.request

    host = host or ("127.0.0.1" if cfg.listen_host in ("0.0.0.0", "") else cfg.listen_host)
    url = f"{'https' if cfg.tls_cert else 'http'}://{host}:{cfg.listen_port}/healthz"
    context = None
    if cfg.tls_cert:  # the configured certificate, exactly (its name need not be the loopback's)
        from . import tls

        context = tls.pinned_context(tls.certificate_info(cfg.tls_cert).fingerprint)
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as r:
            version = json.loads(r.read()).get("version", "?")
    except Exception as e:
        return Check("daemon", FAIL, f"{url} does not answer ({getattr(e, 'reason', e)})",
                     "start it: systemctl start appliance (or 'appliance serve')")
    return Check("daemon", OK, f"answering at {url} (version {version})")


def check_proxy(cfg: Config, host: str | None = None) -> Check:
    host = host or str(cfg.bridge_address)
    closed = [str(p) for p in (cfg.proxy_port, cfg.transparent_proxy_port) if not _tcp(host, p)]
    if closed:
        return Check("egress proxy", FAIL, f"nothing listens on {host} port {', '.join(closed)}",
                     "the daemon runs the proxy: is it running? see its log for mitmdump restarts")
    return Check("egress proxy", OK, f"listening on {host}:{cfg.proxy_port} and :{cfg.transparent_proxy_port}")


def check_resolver(cfg: Config, host: str | None = None) -> Check:
    """The filtering resolver answers a query (any answer, REFUSED included, means it is up)."""
    import dns.exception
    import dns.message
    import dns.query

    host = host or str(cfg.bridge_address)
    query = dns.message.make_query("doctor.appliance.invalid", "A")
    try:
        reply = dns.query.udp(query, host, port=cfg.dns_port, timeout=2)
    except (dns.exception.Timeout, OSError) as e:
        return Check("resolver", FAIL, f"no answer from {host}:{cfg.dns_port} ({type(e).__name__})",
                     "the daemon runs the resolver: is it running?")
    return Check("resolver", OK, f"answering on {host}:{cfg.dns_port} (rcode {dns.rcode.to_text(reply.rcode())})")


def check_git_proxy(cfg: Config, host: str | None = None) -> Check:
    host = host or str(cfg.bridge_address)
    if not _tcp(host, cfg.git_proxy_port):
        return Check("git proxy", FAIL, f"nothing listens on {host}:{cfg.git_proxy_port}",
                     "the daemon runs the git proxy: is it running?")
    return Check("git proxy", OK, f"listening on {host}:{cfg.git_proxy_port}")


def check_nft_table(cfg: Config) -> Check:
    nft = Nft(timeout=10)
    try:
        text = nft.list_text("inet", cfg.egress_table)
    except NftError as e:
        if not shutil.which(nft.binary):
            return Check("nft table", FAIL, "nft not found", "apt-get install nftables")
        return Check("nft table", FAIL, f"table inet {cfg.egress_table} is not loaded",
                     f"the daemon loads it at start: is it running? (needs root to list) [{e.message}]")
    closed = "drop" in text.split("chain egress_gate", 1)[-1].split("}", 1)[0]
    if closed:
        return Check("nft table", WARN, f"inet {cfg.egress_table} loaded, egress gate closed (proxy down)",
                     "guests have no egress until the daemon's proxy is up again")
    return Check("nft table", OK, f"inet {cfg.egress_table} loaded, egress gate open")


def check_clock() -> Check:
    """The kernel's NTP status (adjtimex): session timings, tokens and TLS need a right clock."""
    import ctypes
    import ctypes.util

    class Timex(ctypes.Structure):
        _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                    ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                    ("pad", ctypes.c_byte * 200)]

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    tx = Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    STA_UNSYNC, TIME_ERROR = 0x0040, 5
    if state == TIME_ERROR or tx.status & STA_UNSYNC:
        return Check("clock", WARN, "not synchronised with NTP (kernel reports unsynchronised)",
                     "install and run an NTP client: apt-get install systemd-timesyncd (or chrony)")
    return Check("clock", OK, f"synchronised (max error {tx.maxerror / 1000:.0f} ms)")


def check_database_clock(cfg: Config) -> Check:
    """The newest session event is not in the future: the clock did not jump backwards."""
    from .db import open_database, utcnow
    from .sessions.models import Event

    db = open_database(cfg.database_url)
    with db.connection_context():
        newest = Event.select(Event.created_at).order_by(Event.id.desc()).first()
    if newest is not None and (newest.created_at - utcnow()).total_seconds() > 60:
        return Check("clock vs database", WARN, f"the newest event is from {newest.created_at:%Y-%m-%d %H:%M} UTC, "
                     "in the future", "the clock went backwards: fix the time, then restart the daemon")
    return Check("clock vs database", OK, "no event from the future")


def check_tls(cfg: Config, now=None) -> Check:
    """The console's certificate: its fingerprint (what `appliance login` pins) and expiry."""
    import datetime as dt

    from . import tls

    if not cfg.tls_cert:
        return Check("tls", WARN, "plain HTTP: passwords and cookies cross the network in clear",
                     "set tls_cert/tls_key (scripts/install makes a self-signed pair), or keep listen_host on 127.0.0.1")
    info = tls.certificate_info(cfg.tls_cert)
    tls.server_context(cfg.tls_cert, cfg.tls_key)  # the key belongs to it
    left = info.not_after - (now or dt.datetime.now(dt.UTC))
    detail = f"{info.fingerprint}, expires {info.not_after:%Y-%m-%d}"
    if left.total_seconds() <= 0:
        return Check("tls", FAIL, f"{detail}: expired", "make a new one: appliance tls init --force, then restart")
    if left.days < 30:
        return Check("tls", WARN, f"{detail} (in {left.days} days)", "renew it: appliance tls init --force, then restart")
    return Check("tls", OK, detail)


def check_forwarding(proc: Path = Path("/proc/sys/net/ipv4/ip_forward")) -> Check:
    """Level `full` needs the host to forward (and masquerade, which the nft table does) guests'
    traffic; without it only HTTP(S) through the proxy leaves."""
    if proc.read_text().strip() == "1":
        return Check("forwarding", OK, "the host forwards sandboxes at level full (nft masquerades them)")
    return Check("forwarding", WARN, "the host does not forward IPv4: sandboxes at level full reach the internet "
                                     "only over HTTP(S) through the egress proxy",
                 "sysctl -w net.ipv4.ip_forward=1 (scripts/install keeps it in /etc/sysctl.d/60-appliance.conf)")


def run_services(cfg: Config) -> list[Check]:
    return [
        _guard("tls", lambda: check_tls(cfg)),
        _guard("forwarding", check_forwarding),
        _guard("daemon", lambda: check_daemon(cfg)),
        _guard("egress proxy", lambda: check_proxy(cfg)),
        _guard("resolver", lambda: check_resolver(cfg)),
        _guard("git proxy", lambda: check_git_proxy(cfg)),
        _guard("nft table", lambda: check_nft_table(cfg)),
        _guard("clock", check_clock),
        _guard("clock vs database", lambda: check_database_clock(cfg)),
    ]
