"""Image profiles: what goes into a guest image, declared in `vmimages/profiles/<name>.toml`.

A profile is data only. `profile_hash()` names one exact build: it covers the profile file, every
file baked into guests (`vmimages/guest/`) and the build code, so changing any of them makes the
next `build_image()` produce a new image version instead of reusing the old one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from pathlib import Path

from appliance_base.config import DEFAULT_GUEST_USER
from appliance_base.errors import ApplianceError

PACKAGE_DIR = Path(__file__).resolve().parent
PROFILE_DIR = PACKAGE_DIR / "profiles"
GUEST_DIR = PACKAGE_DIR / "guest"
# The build code whose behaviour decides what an image contains.
BUILD_CODE = (PACKAGE_DIR / "build.py", PACKAGE_DIR / "profiles.py", PACKAGE_DIR / "npm_payloads.py")

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# A Debian package name, optionally with an apt version/release suffix (pkg=1.2, pkg/bookworm).
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(?:[=/][A-Za-z0-9+.~:\-]+)?$")
NPM_RE = re.compile(r"^(?:@[a-z0-9][a-z0-9._\-]*/)?[a-z0-9][a-z0-9._\-]*(?:@[A-Za-z0-9.^~<>=*\-]+)?$")
VARIANTS = ("minbase", "apt", "required", "important", "standard")
AGENT_NAMES = ("claude-code", "codex")  # vmimages.npm_payloads.AGENTS knows where their binaries are

_FIELDS = {
    "name": str,
    "description": str,
    "suite": str,
    "variant": str,
    "packages": list,
    "node": str,
    "npm_global": list,
    "agents": list,
    "extra_steps": list,
    "disk_size": int,
    "kernel_cmdline": str,
    "guest_user": str,
}
_REQUIRED = ("name", "description", "suite", "packages", "disk_size", "kernel_cmdline")


@dataclasses.dataclass(frozen=True)
class Profile:
    """One guest image recipe. `disk_size` is in GiB. `node` is a Node.js major version installed
    from the npm registry's official binaries (with npm) instead of Debian's; `npm_global` are
    installed with it (or with Debian's npm when `node` is empty). `agents` are coding agents whose
    native binaries go to /usr/local/bin (no Node needed in the guest). `extra_steps` are shell
    commands run as root inside the finished root file system (chroot, network available) after
    all that, in order; any failing step fails the build."""

    name: str
    description: str
    suite: str
    packages: tuple[str, ...]
    disk_size: int
    kernel_cmdline: str
    variant: str = "minbase"
    node: str = ""
    npm_global: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    extra_steps: tuple[str, ...] = ()
    guest_user: str = DEFAULT_GUEST_USER
    path: Path | None = None

    @property
    def disk_bytes(self) -> int:
        return self.disk_size * 1024**3


def known_profiles(profile_dir: Path = PROFILE_DIR) -> list[str]:
    """Names of the profiles shipped (sorted)."""
    return sorted(p.stem for p in profile_dir.glob("*.toml"))


def unknown_profile_error(name: str, profile_dir: Path = PROFILE_DIR) -> ApplianceError:
    known = known_profiles(profile_dir)
    return ApplianceError(
        f"unknown image profile {name!r}",
        hint=f"known profiles: {', '.join(known) or '(none)'}",
    )


def profile_path(name: str, profile_dir: Path = PROFILE_DIR) -> Path:
    if not NAME_RE.match(name or ""):
        raise unknown_profile_error(name, profile_dir)
    path = profile_dir / f"{name}.toml"
    if not path.is_file():
        raise unknown_profile_error(name, profile_dir)
    return path


def parse_profile(text: str, origin: str = "<profile>", path: Path | None = None) -> Profile:
    """Parse and check one profile's TOML text. Raises ApplianceError naming the bad field."""

    def bad(msg: str) -> ApplianceError:
        return ApplianceError(f"{origin}: {msg}", hint="fix the image profile file")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise bad(f"not valid TOML: {e}") from e
    for key in data:
        if key not in _FIELDS:
            raise bad(f"unknown field {key!r} (known: {', '.join(_FIELDS)})")
    for key in _REQUIRED:
        if key not in data:
            raise bad(f"missing field {key!r}")
    for key, value in data.items():
        want = _FIELDS[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise bad(f"field {key!r} must be a {want.__name__}")
        if want is list and not all(isinstance(v, str) and v.strip() for v in value):
            raise bad(f"field {key!r} must be a list of non-empty strings")

    if not NAME_RE.match(data["name"]):
        raise bad(f"name {data['name']!r} must be lower-case letters, digits and '_'")
    if not re.match(r"^[a-z][a-z0-9\-]*$", data["suite"]):
        raise bad(f"suite {data['suite']!r} is not a Debian suite name")
    variant = data.get("variant", "minbase")
    if variant not in VARIANTS:
        raise bad(f"variant must be one of {', '.join(VARIANTS)}")
    if not 1 <= data["disk_size"] <= 1024:
        raise bad("disk_size (GiB) must be between 1 and 1024")
    if not data["packages"]:
        raise bad("packages must not be empty")
    for pkg in data["packages"]:
        if not PACKAGE_RE.match(pkg):
            raise bad(f"{pkg!r} is not a Debian package name")
    for pkg in data.get("npm_global", []):
        if not NPM_RE.match(pkg):
            raise bad(f"{pkg!r} is not an npm package name")
    node = data.get("node", "")
    if node and not re.fullmatch(r"[1-9][0-9]", node):
        raise bad(f"node {node!r} must be a Node.js major version such as \"24\"")
    for agent in data.get("agents", []):
        if agent not in AGENT_NAMES:
            raise bad(f"unknown agent {agent!r} (known: {', '.join(AGENT_NAMES)})")
    if len(set(data["packages"])) != len(data["packages"]):
        raise bad("packages lists a package twice")
    user = data.get("guest_user", DEFAULT_GUEST_USER)
    if not re.match(r"^[a-z_][a-z0-9_\-]{0,31}$", user) or user == "root":
        raise bad(f"guest_user {user!r} is not a valid unprivileged user name")
    cmdline = " ".join(data["kernel_cmdline"].split())
    if "root=" not in cmdline:
        raise bad("kernel_cmdline must name the root device (root=...)")

    return Profile(
        name=data["name"],
        description=data["description"].strip(),
        suite=data["suite"],
        variant=variant,
        packages=tuple(data["packages"]),
        node=node,
        npm_global=tuple(data.get("npm_global", [])),
        agents=tuple(data.get("agents", [])),
        extra_steps=tuple(data.get("extra_steps", [])),
        disk_size=data["disk_size"],
        kernel_cmdline=cmdline,
        guest_user=user,
        path=path,
    )


def load_profile(name: str, profile_dir: Path = PROFILE_DIR) -> Profile:
    """The profile called `name`; an unknown name raises ApplianceError listing the known ones."""
    path = profile_path(name, profile_dir)
    profile = parse_profile(path.read_text(encoding="utf-8"), origin=str(path), path=path)
    if profile.name != name:
        raise ApplianceError(
            f"{path}: declares name {profile.name!r} but the file is called {name}.toml",
            hint="make the file name and the name field agree",
        )
    return profile


def guest_files(guest_dir: Path = GUEST_DIR) -> list[Path]:
    """Every regular file under the guest directory, in a stable order (caches excluded)."""
    files = []
    for p in sorted(guest_dir.rglob("*")):
        rel = p.relative_to(guest_dir)
        if "__pycache__" in rel.parts or p.name.endswith((".pyc", "~")) or p.name.startswith(".#"):
            continue
        if p.is_file() and not p.is_symlink():
            files.append(p)
    return files


def profile_hash(
    name: str,
    profile_dir: Path = PROFILE_DIR,
    guest_dir: Path = GUEST_DIR,
    build_code: tuple[Path, ...] = BUILD_CODE,
) -> str:
    """sha256 (hex) over the profile file, the guest files (paths and contents) and
    the build code. Cheap: no build, no root. Scripts use it to decide whether an image is current."""
    path = profile_path(name, profile_dir)
    h = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        h.update(label.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)

    add("profile", path.read_bytes())
    for f in guest_files(guest_dir):
        rel = f.relative_to(guest_dir).as_posix()
        add(f"guest:{rel}", f.read_bytes())
    for code in build_code:
        add(f"code:{code.name}", code.read_bytes())
    return h.hexdigest()
