"""Environments: list (with those a team shares), add, edit, share with a team, delete, choose the default. Validation is the service's (`save_environment`):
wildcards checked on save, .env errors reported with their line; the form keeps what was typed."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.accounts.models import Team, TeamMember
from appliance.environments import access as environment_access
from appliance.environments.models import NETWORK_LEVELS, Environment
from appliance.environments.service import save_environment
from appliance.errors import ApplianceError, Conflict, Invalid
from appliance.sessions import removal

from ..limits import guest_limits, model_choice
from . import require_user

bp = Blueprint("console_envs", __name__)


def _own(user, env_id: int) -> Environment:
    """Only the owner edits (a team mate it is shared with: 403; anyone else: 404)."""
    return environment_access.owned(user, env_id)


def _int_or_none(name: str) -> int | None:
    value = request.form.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise Invalid(f"{name} must be a whole number") from None


def _form_data() -> dict:
    f = request.form
    return {"name": f.get("name", ""), "network_level": f.get("network_level", "limited"),
            "domains": f.get("domains", ""), "include_defaults": f.get("include_defaults") == "on",
            "variables": f.get("variables", "").replace("\r\n", "\n"),
            "setup_script": f.get("setup_script", "").replace("\r\n", "\n"), "profile": f.get("profile", ""),
            **({"model": f.get("model", "")} if "model" in f else {}),
            "vcpus": _int_or_none("vcpus"), "memory_mb": _int_or_none("memory_mb"), "disk_gb": _int_or_none("disk_gb"),
            "is_default": f.get("is_default") == "on", "team": f.get("team", "")}


@bp.get("/environments")
def index():
    user = require_user()
    envs = environment_access.usable(user).order_by(Environment.owner != user, Environment.name)
    return render_template("console/environments.html", envs=list(envs), user=user, error=None)


@bp.route("/environments/new", methods=["GET", "POST"])
@bp.route("/environments/<int:env_id>", methods=["GET", "POST"])
def edit(env_id=None):
    user = require_user()
    env = _own(user, env_id) if env_id is not None else None
    error = None
    if request.method == "POST":
        try:
            save_environment(user, env, _form_data(), limits=guest_limits(), models=model_choice())
            return redirect(url_for("console_envs.index"))
        except ApplianceError as e:  # Invalid, and the allowlist's own PolicyError
            error = e.message + (f" — {e.hint}" if e.hint else "")
        values = dict(request.form)
    elif env is not None:
        values = {"name": env.name, "network_level": env.network_level, "domains": env.allowed_domains,
                  "include_defaults": "on" if env.include_defaults else "", "variables": env.variables,
                  "setup_script": env.setup_script, "profile": env.profile, "model": env.model,
                  "vcpus": env.vcpus or "",
                  "memory_mb": env.memory_mb or "", "disk_gb": env.disk_gb or "",
                  "is_default": "on" if env.is_default else "", "team": env.team.name if env.team_id else ""}
    else:
        values = {"network_level": "limited"}
    return render_template("console/environment_form.html", env=env, values=values, levels=NETWORK_LEVELS,
                           limits=guest_limits(), models=model_choice().allowed, error=error,
                           teams=_teams_of(user)), (400 if error else 200)


def _teams_of(user) -> list[str]:
    return [m.team.name for m in TeamMember.select().join(Team).where(TeamMember.user == user).order_by(Team.name)]


@bp.post("/environments/<int:env_id>/delete")
def delete(env_id):
    user = require_user()
    try:
        removal.delete_environment(user, env_id)
    except Conflict as e:  # shown on the list, nothing changed
        envs = environment_access.usable(user).order_by(Environment.owner != user, Environment.name)
        return render_template("console/environments.html", envs=list(envs), user=user,
                               error=e.message + (f" — {e.hint}" if e.hint else "")), 409
    return redirect(url_for("console_envs.index"))


@bp.post("/environments/<int:env_id>/default")
def make_default(env_id):
    user = require_user()
    save_environment(user, _own(user, env_id), {"is_default": True}, limits=guest_limits())
    return redirect(url_for("console_envs.index"))
