"""Forges: turning a session's pushed branch into a pull (merge) request.

    forge = forge_for(repository, state_dir=cfg.state_dir)
    pr = forge.create_pull_request(session.work_branch, session.base_branch, title, body, author=user)
    session.pr_url = pr.url     # pr.created is False when an open one already existed: same URL

Kinds (Repository.forge): github, gitlab, gitea (REST, the repository's token credential), local
(merge requests kept here for repositories the appliance hosts; see `local.py`), none (no pull
requests: forge_for raises ForgeConfigError).
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    DEFAULT_TIMEOUT,
    BranchNotFound,
    Check,
    Forge,
    ForgeAuthError,
    ForgeConfigError,
    ForgeError,
    ForgeNotFound,
    ForgeUnreachable,
    MergeConflict,
    NothingToMerge,
    PullRequest,
)

KINDS = ("github", "gitlab", "gitea", "local")


def forge_for(repository, *, state_dir: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Forge:
    """The forge adapter for `repository` (a repos.models.Repository).

    `state_dir` (the appliance's) is used by the local forge only; `timeout` (seconds per request)
    by the remote ones."""
    kind = (repository.forge or "none").strip().lower()
    if kind == "github":
        from .github import GitHubForge

        return GitHubForge(repository, timeout=timeout)
    if kind == "gitlab":
        from .gitlab import GitLabForge

        return GitLabForge(repository, timeout=timeout)
    if kind == "gitea":
        from .gitea import GiteaForge

        return GiteaForge(repository, timeout=timeout)
    if kind == "local":
        from .local import LocalForge

        return LocalForge(repository, state_dir=state_dir)
    if kind == "none":
        raise ForgeConfigError(f"repository {repository.name} has no forge to create pull requests on",
                               hint=f"set the repository's forge to one of {', '.join(KINDS)}")
    raise ForgeConfigError(f"repository {repository.name}: unknown forge {repository.forge!r}",
                           hint=f"use one of {', '.join(KINDS)} (or none)")


__all__ = ["forge_for", "KINDS", "Forge", "PullRequest", "Check", "ForgeError", "ForgeConfigError", "ForgeAuthError",
           "ForgeUnreachable", "ForgeNotFound", "BranchNotFound", "NothingToMerge", "MergeConflict"]
