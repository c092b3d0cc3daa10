"""Per-file changes between two commits, computed on the host (never in a guest: what the console
shows is what was pushed). Shared by the session engine (the work branch against its base) and the
local forge (a merge request).

One `git diff` call each for the statuses, the counts and the patch; external diff drivers and
textconv are off, so a repository's attributes cannot make the host run anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .git import Git, GitError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
MAX_PATCH_BYTES = 512 * 1024  # per file; larger patches are cut (and marked) so one file cannot flood a page
CHANGES = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "T": "modified", "C": "added"}
OPTIONS = ("--no-color", "--no-ext-diff", "--no-textconv", "-M")


@dataclass(frozen=True)
class FileDiff:
    path: str
    old_path: str | None
    change: str  # added | modified | deleted | renamed
    added: int
    removed: int
    binary: bool
    patch: str  # from the first hunk on (the file list says what the header would)
    truncated: bool = False


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


def compute(git: Git, repo: Path, base: str, head: str) -> Diff:
    """`base...head` as a pull request shows it: from their merge base to head."""
    merge_base = git.run(["merge-base", base, head], cwd=repo)
    if not merge_base.ok:
        raise GitError(f"no common history between {base} and {head}",
                       hint="the work branch must start from the base branch")
    base_sha = merge_base.stdout.strip()
    head_sha = git.run(["rev-parse", "--verify", f"{head}^{{commit}}"], cwd=repo, check=True).stdout.strip()
    return Diff(base_sha, head_sha, file_changes(git, repo, base_sha, head_sha))


def file_changes(git: Git, repo: Path, base: str, head: str, max_patch_bytes: int = MAX_PATCH_BYTES) -> list[FileDiff]:
    def run(*args: str) -> str:
        return git.run(["diff", *OPTIONS, *args, base, head], cwd=repo, check=True).stdout

    status = run("--name-status", "-z").split("\0")
    numstat = run("--numstat", "-z").split("\0")
    chunks = _split_patch(run("--patch", "--full-index"))
    files: list[FileDiff] = []
    si = ni = 0
    while si < len(status) and status[si]:
        code = status[si][0]
        if code in "RC":
            old_path, path, si = status[si + 1], status[si + 2], si + 3
        else:
            old_path, path, si = None, status[si + 1], si + 2
        counts = numstat[ni].split("\t")
        ni += 3 if counts[-1] == "" else 1  # a rename: "a\tr\t" then the old and the new path
        binary = counts[0] == "-"
        text = _hunks(chunks[len(files)]) if len(files) < len(chunks) and not binary else ""
        cut = len(text.encode()) > max_patch_bytes
        if cut:
            text = text.encode()[:max_patch_bytes].decode("utf-8", "ignore")
        files.append(FileDiff(path=path, old_path=old_path if code == "R" else None,
                              change=CHANGES.get(code, "modified"), added=0 if binary else int(counts[0]),
                              removed=0 if binary else int(counts[1]), binary=binary, patch=text, truncated=cut))
    return sorted(files, key=lambda f: f.path)


def _split_patch(patch: str) -> list[str]:
    """A `git diff --patch` output cut into one text per file, in output order."""
    chunks: list[str] = []
    current: list[str] = []
    for line in patch.splitlines(keepends=True):
        if line.startswith("diff --git ") and current:
            chunks.append("".join(current))
            current = []
        current.append(line)
    if current:
        chunks.append("".join(current))
    return chunks


def _hunks(chunk: str) -> str:
    at = chunk.find("\n@@")
    return chunk[at + 1:] if at >= 0 else ""
