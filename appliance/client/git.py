"""Git in the engineer's local checkout: which repository, which branch, pushed or not, clean or
not. Read-only except `stash`, `fetch_branch` and `checkout_branch`, which teleport calls only
after every check passed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ApplianceError


class Checkout:
    def __init__(self, path: str | os.PathLike = "."):
        self.cwd = Path(path)
        out = self._git("rev-parse", "--show-toplevel", check=False)
        if out.returncode != 0:
            raise ApplianceError(f"{Path(path).resolve()} is not inside a git checkout",
                                 hint="run this from your clone of the repository")
        self.root = Path(out.stdout.strip()).resolve()

    def _git(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        result = subprocess.run(["git", *args], cwd=self.cwd, capture_output=True, text=True, env=env,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise ApplianceError(f"git {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:] or ['?']}"[:300],
                                 hint="fix the checkout (see 'git status') and try again")
        return result

    def git(self, *args: str) -> str:
        return self._git(*args).stdout.strip()

    def origin_url(self) -> str:
        out = self._git("remote", "get-url", "origin", check=False)
        if out.returncode != 0:
            raise ApplianceError("this checkout has no 'origin' remote",
                                 hint="add it: git remote add origin URL")
        return out.stdout.strip()

    def current_branch(self) -> str:
        out = self._git("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        if out.returncode != 0:
            raise ApplianceError("HEAD is detached: no current branch", hint="check out a branch first")
        return out.stdout.strip()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def remote_head(self, branch: str) -> str | None:
        """The branch's commit on origin (asks origin: `git ls-remote`), None when it has no such branch."""
        out = self._git("ls-remote", "--heads", "origin", f"refs/heads/{branch}", check=False)
        if out.returncode != 0:
            raise ApplianceError(f"cannot reach origin ({self.origin_url()}): {out.stderr.strip()[:200]}",
                                 hint="check your network and credentials for origin")
        for line in out.stdout.splitlines():
            sha, ref = line.split("\t", 1)
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    def is_pushed(self, branch: str) -> tuple[bool, str]:
        """(pushed, why not): origin has the branch and HEAD is its commit or behind it."""
        remote = self.remote_head(branch)
        if remote is None:
            return False, f"branch {branch!r} is not on origin"
        head = self.head()
        if remote == head:
            return True, ""
        has = self._git("cat-file", "-e", f"{remote}^{{commit}}", check=False).returncode == 0
        if has and self._git("merge-base", "--is-ancestor", head, remote, check=False).returncode == 0:
            return True, ""
        return False, f"branch {branch!r} has local commits that are not on origin"

    def dirty_files(self) -> list[str]:
        """Tracked files with uncommitted changes (untracked files do not block a checkout)."""
        out = self.git("status", "--porcelain", "--untracked-files=no")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def stash(self, message: str) -> None:
        self.git("stash", "push", "--message", message)

    def fetch_branch(self, branch: str) -> None:
        self.git("fetch", "--quiet", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")

    def checkout_branch(self, branch: str) -> None:
        exists = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False).returncode == 0
        if exists:
            self.git("checkout", "--quiet", branch)
            self.git("merge", "--quiet", "--ff-only", f"origin/{branch}")
        else:
            self.git("checkout", "--quiet", "-b", branch, "--track", f"origin/{branch}")


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(.+)$")


def normalize_url(url: str) -> str:
    """A comparable form of a git URL: `host/path` without scheme, user, port, `.git` and slashes;
    local paths become their resolved path. `git@github.com:acme/api.git` and
    `https://github.com/acme/api` are the same repository."""
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme == "file":
            return str(Path(parts.path).resolve()).removesuffix(".git").rstrip("/")
        host = (parts.hostname or "").lower()
        path = parts.path
    elif _SCP_LIKE.match(url) and not url.startswith(("/", ".")):
        m = _SCP_LIKE.match(url)
        host, path = m.group(1).lower(), m.group(2)
    else:
        return str(Path(url).expanduser().resolve()).removesuffix(".git").rstrip("/")
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host}/{path}"


def url_tail(url: str, parts: int = 2) -> str:
    """The last `parts` path components of a URL: `acme/api` for `git@github.com:acme/api.git`."""
    return "/".join(normalize_url(url).split("/")[-parts:])


def match_repository(origin: str, repositories: list[dict]) -> dict | None:
    """The server's repository whose URL is origin's (normalized), else the one whose name is
    origin's `owner/name` (or, failing that, its last component)."""
    want = normalize_url(origin)
    for repo in repositories:
        if normalize_url(repo.get("url", "")) == want:
            return repo
    for n in (2, 1):
        tail = url_tail(origin, n)
        hits = [r for r in repositories if r.get("name") == tail or r.get("forge_project") == tail]
        if len(hits) == 1:
            return hits[0]
    return None
