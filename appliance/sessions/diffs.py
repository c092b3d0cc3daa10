"""The session branch against its base, computed on the host from the mirror (never in the guest:
what the console shows is what was pushed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..gitproxy.git import Git, GitError


@dataclass(frozen=True)
class FileDiff:
    path: str
    old_path: str | None
    change: str  # added | modified | deleted | renamed
    added: int
    removed: int
    binary: bool
    patch: str


@dataclass(frozen=True)
class Diff:
    base_sha: str
    head_sha: str
    files: list[FileDiff]

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)


CHANGE = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "T": "modified", "C": "added"}


def compute(git: Git, repo: Path, base: str, head: str) -> Diff:
    """`base...head` as a pull request would show it: from their merge base to head."""
    merge_base = git.run(["merge-base", base, head], cwd=repo)
    if not merge_base.ok:
        raise GitError(f"no common history between {base} and {head}",
                       hint="the work branch must start from the base branch")
    base_sha = merge_base.stdout.strip()
    head_sha = git.run(["rev-parse", "--verify", f"{head}^{{commit}}"], cwd=repo, check=True).stdout.strip()
    status = git.run(["diff", "--name-status", "-z", "-M", base_sha, head_sha], cwd=repo, check=True).stdout
    numstat = git.run(["diff", "--numstat", "-z", "-M", base_sha, head_sha], cwd=repo, check=True).stdout
    counts = _parse_numstat(numstat)
    files = []
    fields = status.split("\0")
    i = 0
    while i < len(fields) - 1:
        code = fields[i]
        if code.startswith(("R", "C")):
            old, path = fields[i + 1], fields[i + 2]
            i += 3
        else:
            old, path = None, fields[i + 1]
            i += 2
        added, removed, binary = counts.get(path, (0, 0, False))
        patch_args = ["diff", "-M", "--no-color", base_sha, head_sha, "--", path] + ([old] if old else [])
        patch = git.run(patch_args, cwd=repo, check=True).stdout
        files.append(FileDiff(path, old, CHANGE.get(code[0], "modified"), added, removed, binary,
                              "" if binary else _strip_header(patch)))
    return Diff(base_sha, head_sha, sorted(files, key=lambda f: f.path))


def _parse_numstat(text: str) -> dict[str, tuple[int, int, bool]]:
    out: dict[str, tuple[int, int, bool]] = {}
    fields = text.split("\0")
    i = 0
    while i < len(fields) and fields[i]:
        added, removed, path = fields[i].split("\t", 2)
        if path == "":  # rename: "a\tr\t" then old NUL new NUL
            path = fields[i + 2]
            i += 3
        else:
            i += 1
        binary = added == "-"
        out[path] = (0 if binary else int(added), 0 if binary else int(removed), binary)
    return out


def _strip_header(patch: str) -> str:
    """Keep from the first hunk on: the file list already says what the header says."""
    at = patch.find("\n@@")
    return patch[at + 1:] if at >= 0 else ""
