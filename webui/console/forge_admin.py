"""Admin: connecting a repository's forge — the webhook URL and secret to paste into the forge,
the repository's auto-fix default, and which forge logins are which appliance users."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.errors import NotFound
from appliance.prloop.hooks import rotate_webhook_secret, webhook_path, webhook_secret
from appliance.prloop.logins import forge_logins, remove_forge_login, set_forge_login
from appliance.prloop.signatures import FORGES
from appliance.repos.models import Repository

from ..app import services
from . import require_admin

bp = Blueprint("console_forges", __name__, url_prefix="/admin/repositories")

SECRET_HEADER = {"github": "Secret (signs X-Hub-Signature-256)", "gitea": "Secret (signs X-Gitea-Signature)",
                 "gitlab": "Secret token (sent as X-Gitlab-Token)"}


def _repository(repo_id: int) -> Repository:
    repo = Repository.get_or_none(Repository.id == repo_id)
    if repo is None:
        raise NotFound(f"no repository {repo_id}")
    return repo


def _base_url() -> str:
    return services().config.public_url.rstrip("/") or request.host_url.rstrip("/")


@bp.get("/<int:repo_id>/forge")
def show(repo_id):
    require_admin()
    repo = _repository(repo_id)
    hooks = repo.forge in FORGES
    return render_template("console/admin_forge.html", repo=repo, hooks=hooks,
                           url=_base_url() + webhook_path(repo) if hooks else "",
                           secret=webhook_secret(repo) if hooks else "", secret_label=SECRET_HEADER.get(repo.forge, ""),
                           logins=forge_logins(repo.forge) if hooks else [], config=services().config)


@bp.post("/<int:repo_id>/forge")
def update(repo_id):
    require_admin()
    repo = _repository(repo_id)
    action = request.form.get("action", "")
    if action == "autofix":
        Repository.update(autofix_default=request.form.get("autofix_default") == "1").where(
            Repository.id == repo.id).execute()
    elif action == "rotate":
        rotate_webhook_secret(repo)
    elif action == "add_login":
        set_forge_login(repo.forge, request.form.get("login", ""), request.form.get("username", ""))
    elif action == "remove_login":
        remove_forge_login(int(request.form.get("mapping", "0") or 0))
    return redirect(url_for("console_forges.show", repo_id=repo.id))
