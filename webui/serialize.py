"""Objects as the API shows them: nothing secret, the owner's name hidden when they asked."""

from __future__ import annotations

from appliance.accounts.models import User
from appliance.environments.models import Environment
from appliance.sessions.access import shows_owner
from appliance.sessions.models import Session


def _at(value) -> str | None:
    return value.isoformat() + "Z" if value else None


def session_dict(s: Session, viewer: User | None) -> dict:
    show_owner = shows_owner(viewer, s)
    return {
        "id": s.id, "title": s.title, "status": s.status, "status_detail": s.status_detail,
        "repository": s.repository.name, "base_branch": s.base_branch, "work_branch": s.work_branch,
        "environment": s.environment_snapshot.get("name"), "agent": s.agent, "visibility": s.visibility,
        "model": s.environment_snapshot.get("model") or None,  # None: the agent's default
        "owner": s.owner.username if show_owner else None,
        "diff": {"added": s.diff_added, "removed": s.diff_removed}, "pr_url": s.pr_url, "error": s.error,
        "pr_number": s.pr_number, "pr_state": s.pr_state, "pr_checks": s.pr_checks, "autofix": s.autofix,
        "created_at": _at(s.created_at), "updated_at": _at(s.updated_at), "finished_at": _at(s.finished_at),
        "group_id": s.group_id, "attempt": s.attempt,  # best-of-N: the attempts of one task share a group
        "archived_at": _at(s.archived_at),
    }


def environment_dict(e: Environment) -> dict:
    return {"id": e.id, "name": e.name, "network_level": e.network_level, "domains": e.domains,
            "include_defaults": e.include_defaults, "variables": e.variables, "setup_script": e.setup_script,
            "profile": e.profile, "model": e.model, "vcpus": e.vcpus, "memory_mb": e.memory_mb, "disk_gb": e.disk_gb,
            "is_default": e.is_default, "owner": e.owner.username, "team": e.team.name if e.team_id else None}
