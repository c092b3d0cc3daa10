"""The `local` forge: merge requests for repositories the appliance hosts itself.

A server with no GitHub/GitLab/Gitea still gets the whole flow: sessions push their branch to a bare
repository under `<state_dir>/git/hosted/<name>.git` (the Repository's `url`), "Create PR" records a
`MergeRequest`, the console shows its diff, and someone merges or closes it.

Merging never touches a working tree. Fast-forward when the target has not moved (unless told
otherwise); else `git merge-tree --write-tree` computes the merged tree in the object store,
`git commit-tree` makes the merge commit, and `git update-ref <target> <new> <old>` moves the target
only if it still points where it did when the merge was computed. A conflict changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

import peewee

from ..db import utcnow
from ..gitproxy.diffs import EMPTY_TREE, MAX_PATCH_BYTES, Diff, file_changes
from ..gitproxy.diffs import FileDiff as FileChange
from ..gitproxy.git import Git, GitError, last_line
from ..gitproxy.repos import valid_branch_name, valid_key
from .base import (
    CLOSED,
    MERGED,
    OPEN,
    BranchNotFound,
    Forge,
    ForgeConfigError,
    ForgeError,
    ForgeNotFound,
    MergeConflict,
    NothingToMerge,
    PullRequest,
    check_request,
)
from .models import MergeRequest, merge_request_url

log = logging.getLogger(__name__)

SYSTEM_IDENTITY = ("Appliance", "appliance@appliance.local")


# -- hosted repositories -------------------------------------------------------------------------


def hosted_root(state_dir: Path | str) -> Path:
    return Path(state_dir) / "git" / "hosted"


def hosted_repository_path(state_dir: Path | str, name: str) -> Path:
    """Where the hosted repository `name` ("acme/api") lives: `<state_dir>/git/hosted/acme/api.git`."""
    if not valid_key(name):
        raise ForgeConfigError(f"{name!r} is not a usable repository name",
                               hint="use '/'-separated names of letters, digits, '.', '_' and '-' (none ending in .git)")
    return hosted_root(state_dir) / f"{name}.git"


def create_hosted_repository(state_dir: Path | str, name: str, initial_files: dict | None = None, *,
                             default_branch: str = "main") -> Path:
    """Create a bare repository hosted by the appliance; with `initial_files` ({path: str | bytes}),
    one first commit on `default_branch` holds them. Returns its path (use it as the Repository's url)."""
    path = hosted_repository_path(state_dir, name)
    if not valid_branch_name(default_branch):
        raise ForgeConfigError(f"{default_branch!r} is not a valid branch name")
    if path.exists():
        raise ForgeError(f"hosted repository {name} already exists", hint="pick another name")
    git = _git_for(Path(state_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        git.run(["init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path)], check=True)
        # Keep a reflog of every branch (merges move them): a wrong merge can be undone by hand.
        git.run([f"--git-dir={path}", "config", "core.logAllRefUpdates", "always"], check=True)
        if initial_files:
            _initial_commit(git, path, initial_files, default_branch)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    log.info("created hosted repository %s at %s", name, path)
    return path


def _initial_commit(git: Git, path: Path, files: dict, branch: str) -> None:
    gd = f"--git-dir={path}"
    with tempfile.TemporaryDirectory(prefix="index-", dir=path) as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        for name, content in sorted(files.items()):
            rel = str(name).strip("/")
            if not rel or any(part in ("", ".", "..", ".git") for part in rel.split("/")):
                raise ForgeError(f"{name!r} is not a usable file path in a repository")
            data = content.encode() if isinstance(content, str) else bytes(content)
            blob = git.run([gd, "hash-object", "-w", "--stdin"], input=data, check=True).stdout.strip()
            git.run([gd, "update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}"], env=env, check=True)
        tree = git.run([gd, "write-tree"], env=env, check=True).stdout.strip()
    commit = git.run([gd, "commit-tree", tree, "-m", "Initial commit"], env=_identity_env(None),
                     check=True).stdout.strip()
    git.run([gd, "update-ref", f"refs/heads/{branch}", commit, "0" * 40], check=True)


def _git_for(state_dir: Path) -> Git:
    return Git(state_dir / "git")


def _identity_env(user) -> dict[str, str]:
    if user is None:
        name, email = SYSTEM_IDENTITY
    else:
        name, email = (user.display_name or user.username), f"{user.username}@appliance.local"
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


# -- what the console shows ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MergeCheck:
    """What merging now would do: fast_forward | merge | conflict | up_to_date."""

    status: str
    target_sha: str
    source_sha: str
    tree: str | None = None  # the merged tree, for `merge`
    conflicts: tuple[str, ...] = ()

    @property
    def mergeable(self) -> bool:
        return self.status != "conflict"


# -- the forge -----------------------------------------------------------------------------------


class LocalForge(Forge):
    kind = "local"

    def __init__(self, repository, *, state_dir: Path | str | None = None, git: Git | None = None):
        self.repository = repository
        url = (repository.url or "").strip()
        self.path = Path(url[len("file://"):] if url.startswith("file://") else url)
        if not self.path.is_absolute() or not (self.path / "HEAD").is_file() or not (self.path / "objects").is_dir():
            raise ForgeConfigError(f"repository {repository.name}: {url!r} is not a bare repository on this server",
                                   hint="the local forge serves repositories hosted by the appliance "
                                        "(create one with create_hosted_repository)")
        if git is None:
            if state_dir is None:
                state_dir = _state_dir_of(self.path)
            git = _git_for(Path(state_dir))
        self.git = git

    def __repr__(self) -> str:
        return f"LocalForge({self.repository.name} at {self.path})"

    # -- git ---------------------------------------------------------------------------------

    def _git(self, *args: str, check: bool = True, **kw):
        res = self.git.run([f"--git-dir={self.path}", *args], **kw)
        if check and not res.ok:
            raise GitError(f"git {args[0]} in {self.repository.name} failed: "
                           f"{last_line(res.stderr) or f'exit {res.returncode}'}",
                           hint="see the appliance's log")
        return res

    def branch_sha(self, branch: str) -> str | None:
        if not valid_branch_name(branch):
            return None
        res = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
        return res.stdout.strip() if res.ok else None

    def _require_branch(self, branch: str) -> str:
        sha = self.branch_sha(branch)
        if sha is None:
            raise BranchNotFound(f"branch {branch!r} is not in {self.repository.name}",
                                 hint="push the branch first (or check its name)")
        return sha

    def _is_ancestor(self, a: str, b: str) -> bool:
        res = self._git("merge-base", "--is-ancestor", a, b, check=False)
        if res.returncode not in (0, 1):
            raise GitError(f"git merge-base in {self.repository.name} failed: {last_line(res.stderr)}")
        return res.returncode == 0

    def _merge_base(self, a: str, b: str) -> str:
        res = self._git("merge-base", a, b, check=False)
        return res.stdout.strip() if res.ok and res.stdout.strip() else EMPTY_TREE  # unrelated histories

    # -- requests ----------------------------------------------------------------------------

    def _open_for(self, head: str) -> MergeRequest | None:
        return (MergeRequest.select()
                .where((MergeRequest.repository == self.repository.id) & (MergeRequest.source_branch == head)
                       & (MergeRequest.state == OPEN))
                .first())

    def _existing(self, mr: MergeRequest, base: str) -> PullRequest:
        if mr.target_branch != base:
            raise ForgeError(f"merge request !{mr.id} already proposes {mr.source_branch} for {mr.target_branch}",
                             hint=f"close !{mr.id} first to propose the branch for {base}")
        return self._pull_request(mr, created=False)

    def create_pull_request(self, head: str, base: str, title: str, body: str = "", *,
                            author=None) -> PullRequest:
        check_request(head, base, title)
        existing = self._open_for(head)
        if existing is not None:
            return self._existing(existing, base)
        head_sha, base_sha = self._require_branch(head), self._require_branch(base)
        if self._is_ancestor(head_sha, base_sha):
            raise NothingToMerge(f"{head} has no commits that {base} does not already have",
                                 hint="commit and push something to propose first")
        try:
            with MergeRequest._meta.database.atomic():
                mr = MergeRequest.create(repository=self.repository.id, source_branch=head, target_branch=base,
                                         title=title.strip()[:255], body=body or "", author=author)
        except peewee.IntegrityError:  # another creator won the race for this branch
            existing = self._open_for(head)
            if existing is None:
                raise
            return self._existing(existing, base)
        log.info("merge request !%d in %s: %s -> %s", mr.id, self.repository.name, head, base)
        return self._pull_request(mr)

    def get(self, number: int) -> MergeRequest:
        mr = MergeRequest.get_or_none((MergeRequest.id == int(number)) & (MergeRequest.repository == self.repository.id))
        if mr is None:
            raise ForgeNotFound(f"no merge request !{number} in {self.repository.name}")
        return mr

    def get_pull_request(self, number: int) -> PullRequest:
        return self._pull_request(self.get(number))

    def merge_requests(self, state: str | None = None) -> list[MergeRequest]:
        q = MergeRequest.select().where(MergeRequest.repository == self.repository.id)
        if state:
            q = q.where(MergeRequest.state == state)
        return list(q.order_by(MergeRequest.id.desc()))

    def _pull_request(self, mr: MergeRequest, created: bool = True) -> PullRequest:
        return PullRequest(url=merge_request_url(self.repository.name, mr.id), number=mr.id, state=mr.state,
                           created=created)

    # -- review ------------------------------------------------------------------------------

    def diff(self, mr: MergeRequest, *, max_patch_bytes: int = MAX_PATCH_BYTES) -> Diff:
        """The changes the request proposes (or, once merged, the changes it brought), per file."""
        if mr.state == MERGED and mr.base_sha and mr.head_sha:
            base, head = mr.base_sha, mr.head_sha
        else:
            head = self._require_branch(mr.source_branch)
            target = self.branch_sha(mr.target_branch)
            base = self._merge_base(target, head) if target else EMPTY_TREE
        return Diff(base_sha=base, head_sha=head, files=file_changes(self.git, self.path, base, head, max_patch_bytes))

    # -- merge and close ---------------------------------------------------------------------

    def check_merge(self, mr: MergeRequest) -> MergeCheck:
        """What `merge` would do now, computed without changing anything but the object store."""
        source = self._require_branch(mr.source_branch)
        target = self._require_branch(mr.target_branch)
        if self._is_ancestor(source, target):
            return MergeCheck("up_to_date", target, source)
        if self._is_ancestor(target, source):
            return MergeCheck("fast_forward", target, source, tree=self._git("rev-parse", f"{source}^{{tree}}").stdout.strip())
        res = self._git("merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", target, source, check=False)
        out = res.stdout.split("\0")
        if res.returncode == 0:
            return MergeCheck("merge", target, source, tree=out[0].strip())
        if res.returncode == 1:
            conflicts = tuple(dict.fromkeys(f for f in out[1:] if f))
            return MergeCheck("conflict", target, source, conflicts=conflicts)
        raise GitError(f"git merge-tree in {self.repository.name} failed: {last_line(res.stderr)}",
                       hint="see the appliance's log")

    def merge(self, mr: MergeRequest, user=None, *, fast_forward: bool = True) -> MergeRequest:
        """Merge the request's source branch into its target; returns the updated request.

        Fast-forwards when possible (unless `fast_forward=False`, which always makes a merge commit).
        Refuses conflicts with MergeConflict, leaving the target branch as it was."""
        mr = self.get(mr.id)  # the current state, not the caller's copy
        if mr.state != OPEN:
            raise ForgeError(f"merge request !{mr.id} is {mr.state}", hint="only an open merge request can be merged")
        check = self.check_merge(mr)
        if check.status == "conflict":
            listed = ", ".join(check.conflicts[:10]) + (" …" if len(check.conflicts) > 10 else "")
            raise MergeConflict(f"merge request !{mr.id} conflicts with {mr.target_branch} in {listed}",
                                hint=f"merge {mr.target_branch} into {mr.source_branch} (or rebase), resolve, "
                                     "and push again", conflicts=list(check.conflicts))
        base = self._merge_base(check.target_sha, check.source_sha)
        if check.status == "up_to_date":
            new = check.target_sha  # its commits are all in the target already: nothing to move
        elif check.status == "fast_forward" and fast_forward:
            new = check.source_sha
        else:
            message = f"Merge branch '{mr.source_branch}' into {mr.target_branch}\n\n!{mr.id}: {mr.title}\n"
            new = self._git("commit-tree", check.tree, "-p", check.target_sha, "-p", check.source_sha,
                            "-F", "-", input=message.encode(), env=_identity_env(user)).stdout.strip()
        if new != check.target_sha:
            res = self._git("update-ref", "-m", f"merge request !{mr.id}", f"refs/heads/{mr.target_branch}",
                            new, check.target_sha, check=False)
            if not res.ok:
                raise ForgeError(f"{mr.target_branch} changed while merge request !{mr.id} was being merged",
                                 hint="try the merge again")
        now = utcnow()
        (MergeRequest.update(state=MERGED, merged_at=now, updated_at=now, merged_by=user, merge_commit_sha=new,
                             base_sha=base, head_sha=check.source_sha)
         .where(MergeRequest.id == mr.id).execute())
        log.info("merged !%d in %s (%s, %s)", mr.id, self.repository.name, check.status, new[:12])
        return self.get(mr.id)

    def close(self, mr: MergeRequest) -> MergeRequest:
        """Close an open request without merging (its branch stays)."""
        now = utcnow()
        n = (MergeRequest.update(state=CLOSED, closed_at=now, updated_at=now)
             .where((MergeRequest.id == mr.id) & (MergeRequest.state == OPEN)).execute())
        if n == 0:
            current = self.get(mr.id)
            raise ForgeError(f"merge request !{mr.id} is {current.state}", hint="only an open merge request can be closed")
        return self.get(mr.id)


def _state_dir_of(repo_path: Path) -> Path:
    """The appliance state dir of a hosted repository (`<state_dir>/git/hosted/…/<name>.git`)."""
    for parent in repo_path.parents:
        if parent.name == "hosted" and parent.parent.name == "git":
            return parent.parent.parent
    raise ForgeConfigError(f"{repo_path} is not under the appliance's hosted repositories",
                           hint="pass the appliance's state_dir to forge_for()")


__all__ = ["LocalForge", "MergeRequest", "Diff", "FileChange", "MergeCheck", "create_hosted_repository",
           "hosted_repository_path", "hosted_root"]
