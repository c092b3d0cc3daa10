"""Host-side bare mirrors of upstream repositories: `<state_dir>/git/mirrors/<key>.git`.

A mirror holds upstream's branches and tags (`refs/heads/*`, `refs/tags/*`, pruned), fetched with
the host credential. Guests read from it through the proxy; a guest's push lands in a quarantine
object directory next to it, goes upstream from there, and only after upstream accepted it are the
objects moved into the mirror and its branch moved.

Every change to a mirror (create, refresh, publish a push) happens under a per-mirror file lock
(`flock`, so it holds across threads and processes). Reads (upload-pack) take no lock: git's
object store and ref updates are safe to read while being written.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .git import Git, GitError, UpstreamError, describe_upstream_failure
from .repos import RepoSpec, fs_name

log = logging.getLogger(__name__)

FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
STAMP = "appliance-refreshed"
MIRROR_CONFIG = {
    "gc.autoDetach": "false",  # gc runs inside the fetch, inside the lock
    "core.logAllRefUpdates": "false",
    "uploadpack.allowFilter": "true",  # partial clones (--filter=blob:none) for big repositories
    "receive.denyDeletes": "true",  # nothing pushes here directly; belt and braces
}


class MirrorBusy(GitError):
    """Another operation held the mirror's lock for too long."""


@dataclasses.dataclass
class PushOutcome:
    ok: bool
    reason: str = ""  # one line for the client's "! [remote rejected] ... (<reason>)"
    detail: list[str] = dataclasses.field(default_factory=list)  # lines shown as "remote: ..."


@dataclasses.dataclass
class Incoming:
    """A quarantine object directory for one push; objects resolve against the mirror too."""

    mirror: Path
    objects: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "GIT_DIR": str(self.mirror),
            "GIT_OBJECT_DIRECTORY": str(self.objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(self.mirror / "objects"),
        }


class MirrorStore:
    def __init__(self, root: Path, git: Git, refresh_interval: float = 10.0, lock_timeout: float = 600.0):
        self.root = Path(root)
        self.git = git
        self.refresh_interval = refresh_interval
        self.lock_timeout = lock_timeout

    @classmethod
    def from_config(cls, cfg) -> MirrorStore:
        git_dir = Path(cfg.state_dir) / "git"
        return cls(git_dir / "mirrors", Git(git_dir, timeout=cfg.git_upstream_timeout),
                   refresh_interval=cfg.git_mirror_refresh_interval)

    def path(self, key: str) -> Path:
        return self.root / f"{fs_name(key)}.git"

    def exists(self, key: str) -> bool:
        return (self.path(key) / "HEAD").is_file()

    def cleanup(self, older_than: float = 3600.0) -> int:
        """Remove quarantines and half-made mirrors left by a crash; returns how many."""
        removed = 0
        now = time.time()
        candidates = [*self.root.glob(".new-*"), *(self.root / ".incoming").glob("*")] if self.root.exists() else []
        for p in candidates:
            try:
                if now - p.stat().st_mtime > older_than:
                    shutil.rmtree(p, ignore_errors=True)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    # -- locking -------------------------------------------------------------------------------

    @contextmanager
    def lock(self, key: str, timeout: float | None = None) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + (self.lock_timeout if timeout is None else timeout)
        fd = os.open(locks / f"{fs_name(key)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            delay = 0.01
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        raise MirrorBusy(f"the mirror of {key} is busy",
                                         hint="another fetch or push of this repository is still running; retry") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- create / refresh ----------------------------------------------------------------------

    def age(self, key: str) -> float | None:
        """Seconds since the last successful refresh, None if never."""
        try:
            return max(0.0, time.time() - (self.path(key) / STAMP).stat().st_mtime)
        except FileNotFoundError:
            return None

    def mark_stale(self, key: str) -> None:
        """Make the next ensure() refresh regardless of the interval."""
        try:
            (self.path(key) / STAMP).unlink()
        except FileNotFoundError:
            pass

    def ensure(self, spec: RepoSpec, max_age: float | None = None) -> Path:
        """The mirror of `spec`, created if missing, refreshed from upstream if older than
        `max_age` (default: the refresh interval). Raises UpstreamError if upstream cannot be read."""
        max_age = self.refresh_interval if max_age is None else max_age
        age = self.age(spec.key)
        if age is not None and age < max_age:
            return self.path(spec.key)
        with self.lock(spec.key):
            age = self.age(spec.key)  # someone may have refreshed while we waited
            if age is not None and age < max_age:
                return self.path(spec.key)
            if not self.exists(spec.key):
                return self._create(spec)
            self._fetch(spec, self.path(spec.key))
            return self.path(spec.key)

    def refresh(self, spec: RepoSpec) -> Path:
        """Fetch from upstream now."""
        return self.ensure(spec, max_age=0)

    def _create(self, spec: RepoSpec) -> Path:
        final = self.path(spec.key)
        tmp = self.root / f".new-{fs_name(spec.key)}-{secrets.token_hex(4)}.git"
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.git.run(["init", "--bare", "--quiet", str(tmp)], check=True)
            for k, v in MIRROR_CONFIG.items():
                self.git.run(["--git-dir", str(tmp), "config", k, v], check=True)
            branch = spec.default_branch or self._upstream_head(spec) or "main"
            self.git.run(["--git-dir", str(tmp), "symbolic-ref", "HEAD", f"refs/heads/{branch}"], check=True)
            self._fetch(spec, tmp)
            if final.exists():  # a leftover without a HEAD (crash during a create)
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("created mirror of %s at %s", spec.key, final)
        return final

    def _upstream_head(self, spec: RepoSpec) -> str | None:
        res = self.git.run(["ls-remote", "--symref", spec.fetch_url, "HEAD"],
                           credential=spec.cred, url=spec.fetch_url)
        if not res.ok:
            raise UpstreamError(describe_upstream_failure(res.stderr, spec.url, spec.key),
                                hint="check that the repository's URL and credential are right and upstream is up")
        for line in res.stdout.splitlines():
            if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                return line[len("ref: refs/heads/"):-len("\tHEAD")]
        return None

    def _fetch(self, spec: RepoSpec, gitdir: Path) -> None:
        res = self.git.run(
            ["--git-dir", str(gitdir), "fetch", "--prune", "--no-tags", "--no-write-fetch-head", "--quiet",
             spec.fetch_url, *FETCH_REFSPECS],
            credential=spec.cred, url=spec.fetch_url,
        )
        if not res.ok:
            log.warning("fetch of %s failed: %s", spec.key, res.stderr.strip())
            raise UpstreamError(describe_upstream_failure(res.stderr, spec.url, spec.key),
                                hint="check that the repository's URL and credential are right and upstream is up")
        (gitdir / STAMP).touch()

    # -- reading -------------------------------------------------------------------------------

    def refs(self, key: str) -> list[tuple[str, str]]:
        """(oid, refname) of the mirror's branches and tags, sorted by name."""
        res = self.git.run(["--git-dir", str(self.path(key)), "for-each-ref",
                            "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/"], check=True)
        out = []
        for line in res.stdout.splitlines():
            oid, _, name = line.partition(" ")
            out.append((oid, name))
        return out

    def head(self, key: str, branch: str) -> str | None:
        """The commit `branch` points at in the mirror, or None."""
        res = self.git.run(["--git-dir", str(self.path(key)), "rev-parse", "--verify", "--quiet",
                            f"refs/heads/{branch}^{{commit}}"])
        return res.stdout.strip() or None

    # -- pushes --------------------------------------------------------------------------------

    @contextmanager
    def incoming(self, key: str) -> Iterator[Incoming]:
        """A fresh quarantine for one push's objects, removed afterwards whatever happens."""
        base = self.root / ".incoming"
        base.mkdir(parents=True, exist_ok=True)
        objects = base / f"{fs_name(key)}-{secrets.token_hex(6)}"
        (objects / "pack").mkdir(parents=True)
        try:
            yield Incoming(self.path(key), objects)
        finally:
            shutil.rmtree(objects, ignore_errors=True)

    def check_pushed_commit(self, inc: Incoming, oid: str) -> str | None:
        """None if `oid` is a commit whose history is complete in quarantine + mirror, else why not."""
        res = self.git.run(["cat-file", "-t", oid], env=inc.env)
        if res.stdout.strip() != "commit":
            return "not a commit" if res.ok else "missing objects"
        res = self.git.run(["rev-list", "--objects", "--quiet", oid, "--not", "--all"], env=inc.env)
        if not res.ok:
            return "missing necessary objects"
        return None

    def push_upstream(self, spec: RepoSpec, inc: Incoming, branch: str, old: str, new: str,
                      force: bool = False) -> PushOutcome:
        """Send `new` to upstream's refs/heads/<branch>; on success adopt the objects into the
        mirror and move its branch. Without `force` upstream's own fast-forward rule decides;
        with it the update is a compare-and-swap against `old` (what the client saw)."""
        ref = f"refs/heads/{branch}"
        args = ["push", "--porcelain", "--no-verify"]
        if force:
            args.append(f"--force-with-lease={ref}:{'' if old == '0' * len(old) else old}")
        args += [spec.fetch_url, f"{new}:{ref}"]
        with self.lock(spec.key):
            res = self.git.run(args, env=inc.env, credential=spec.cred, url=spec.fetch_url)
            outcome = parse_push_porcelain(res.stdout, ref)
            if outcome is None:  # no status line for our ref: the push never got that far
                msg = describe_upstream_failure(res.stderr, spec.url, spec.key)
                log.warning("push of %s to %s failed: %s", ref, spec.key, res.stderr.strip())
                return PushOutcome(False, msg, detail_lines(res.stderr, spec))
            if not outcome.ok:
                log.info("upstream of %s refused %s: %s", spec.key, ref, outcome.reason)
                outcome.detail = detail_lines(res.stderr, spec)
                self.mark_stale(spec.key)  # let the next fetch show the client what upstream has
                return outcome
            self._adopt(inc)
            self.git.run(["--git-dir", str(inc.mirror), "update-ref", ref, new], check=True)
            log.info("pushed %s %s to upstream of %s", ref, new[:12], spec.key)
            return outcome

    def _adopt(self, inc: Incoming) -> None:
        """Move the quarantined packs into the mirror (index last: git only sees a pack by its .idx)."""
        src = inc.objects / "pack"
        dst = inc.mirror / "objects" / "pack"
        dst.mkdir(parents=True, exist_ok=True)
        order = {".pack": 0, ".rev": 1, ".bitmap": 2, ".idx": 3}
        files = sorted((p for p in src.iterdir() if p.suffix in order), key=lambda p: order[p.suffix])
        for p in files:
            os.replace(p, dst / p.name)
        # Loose objects (index-pack writes none, but be complete).
        for sub in inc.objects.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                target = inc.mirror / "objects" / sub.name
                target.mkdir(exist_ok=True)
                for obj in sub.iterdir():
                    os.replace(obj, target / obj.name)


REJECTION_ADVICE = {
    "non-fast-forward": "non-fast-forward; fetch, merge or rebase, then push again",
    "fetch first": "upstream's branch has commits you do not have; fetch, merge or rebase, then push again",
    "stale info": "upstream's branch moved since you fetched; fetch and push again",
    "already exists": "the branch already exists upstream",
}


def parse_push_porcelain(stdout: str, ref: str) -> PushOutcome | None:
    """The outcome for `ref` from `git push --porcelain` output, None if no line names it.

    Lines are `<flag>\t<from>:<to>\t<summary>[ (<reason>)]`; flag `!` is a refusal, either by
    git before sending (`[rejected] (non-fast-forward)`) or by upstream (`[remote rejected] (...)`)."""
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        flag, spec, summary = parts[0], parts[1], parts[2].strip()
        if spec.rpartition(":")[2] != ref:
            continue
        if flag != "!":
            return PushOutcome(True)
        why = summary
        if summary.endswith(")") and "(" in summary:
            why = summary[summary.index("(") + 1:-1].strip()
        why = REJECTION_ADVICE.get(why, why)
        return PushOutcome(False, "upstream refused: " + " ".join(why.split())[:200])
    return None


def detail_lines(stderr: str, spec: RepoSpec) -> list[str]:
    """Upstream's own words (the `remote:` lines of the host's push), URL and credential removed."""
    out = []
    for line in spec.cred.redact(stderr).replace(spec.url, f"<{spec.key}>").splitlines():
        if line.startswith("remote:"):
            text = line[len("remote:"):].strip()
            if text:
                out.append(text[:300])
    return out[:20]


__all__ = ["MirrorStore", "MirrorBusy", "PushOutcome", "Incoming", "parse_push_porcelain"]
