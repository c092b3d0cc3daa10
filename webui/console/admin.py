"""Admin pages: users, teams, repositories (credentials write-only), model API credentials (written to
the egress credentials file, mode 0600; only which hosts have one is ever shown back), guest size
maximums."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.security import generate_password_hash

from appliance.accounts.models import Team, TeamMember, User
from appliance.accounts.passwords import MIN_PASSWORD, set_password
from appliance.accounts.service import check_username, set_disabled
from appliance.agents.credentials import MODEL_APIS
from appliance.errors import Invalid, NotFound
from appliance.guest_limits import FIELDS as LIMIT_FIELDS
from appliance.guest_limits import GuestLimits
from appliance.repos.models import CREDENTIAL_KINDS, FORGES, Repository
from appliance.repos.service import save_repository
from appliance.sessions import removal

from ..app import services
from . import require_admin

bp = Blueprint("console_admin", __name__, url_prefix="/admin")

# host -> (header, what precedes the key): the agents' model APIs
MODEL_HOSTS = {api.host: (api.header, api.prefix) for api in MODEL_APIS.values()}


def _flash_redirect(endpoint: str, **kw):
    return redirect(url_for(endpoint, **kw))


# --- users and teams ------------------------------------------------------------------------------


@bp.route("/users", methods=["GET", "POST"])
def users():
    require_admin()
    error = None
    if request.method == "POST":
        try:
            name = check_username(request.form.get("username", ""))
            if User.select().where(User.username == name).exists():
                raise Invalid(f"user {name!r} already exists")
            password = request.form.get("password", "")
            if len(password) < MIN_PASSWORD:
                raise Invalid(f"a password needs at least {MIN_PASSWORD} characters")
            User.create(username=name, display_name=request.form.get("display_name", "").strip(),
                        is_admin=request.form.get("is_admin") == "on", password_hash=generate_password_hash(password))
            return _flash_redirect("console_admin.users")
        except Invalid as e:
            error = e.message + (f" — {e.hint}" if e.hint else "")
    rows = list(User.select().order_by(User.username))
    teams = {u.id: [m.team.name for m in TeamMember.select().join(Team).where(TeamMember.user == u)] for u in rows}
    return render_template("console/admin_users.html", users=rows, teams=teams, error=error), (400 if error else 200)


@bp.post("/users/<int:user_id>")
def update_user(user_id):
    me = require_admin()
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    if request.form.get("password"):
        set_password(user, request.form["password"])
    if "is_admin" in request.form and user.id != me.id:  # nobody demotes themselves by accident
        User.update(is_admin=request.form["is_admin"] == "1").where(User.id == user.id).execute()
    if "disabled" in request.form:  # their sign-ins and tokens stop at their next request
        set_disabled(user, request.form["disabled"] == "1", by=me)
    return _flash_redirect("console_admin.users")


@bp.route("/teams", methods=["GET", "POST"])
def teams():
    require_admin()
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        if not name or len(name) > 64:
            error = "a team needs a name of 1 to 64 characters"
        elif Team.select().where(Team.name == name).exists():
            error = f"team {name!r} already exists"
        else:
            Team.create(name=name)
            return _flash_redirect("console_admin.teams")
    rows = list(Team.select().order_by(Team.name))
    members = {t.id: [m.user.username for m in TeamMember.select().join(User).where(TeamMember.team == t)
                      .order_by(User.username)] for t in rows}
    return render_template("console/admin_teams.html", teams=rows, members=members,
                           users=list(User.select().order_by(User.username)), error=error), (400 if error else 200)


@bp.post("/teams/<int:team_id>/members")
def team_members(team_id):
    require_admin()
    team = Team.get_or_none(Team.id == team_id)
    user = User.get_or_none(User.username == request.form.get("username", ""))
    if team is None or user is None:
        raise NotFound("no such team or user")
    if request.form.get("action") == "remove":
        TeamMember.delete().where((TeamMember.team == team) & (TeamMember.user == user)).execute()
    elif not TeamMember.select().where((TeamMember.team == team) & (TeamMember.user == user)).exists():
        TeamMember.create(team=team, user=user)
    return _flash_redirect("console_admin.teams")


# --- repositories ---------------------------------------------------------------------------------

@bp.route("/repositories", methods=["GET", "POST"])
def repositories():
    user = require_admin()
    error, values = None, {}
    if request.method == "POST":
        values = {k: v for k, v in request.form.items() if k not in ("credential_secret", "csrf_token")}
        try:
            data = dict(values)
            data["credential_secret"] = request.form.get("credential_secret", "")
            save_repository(user, data)
            return _flash_redirect("console_admin.repositories")
        except Invalid as e:
            error = e.message + (f" — {e.hint}" if e.hint else "")
    repos = [r.public_dict() | {"team": r.team.name if r.team_id else ""}
             for r in Repository.select().order_by(Repository.name)]
    return render_template("console/admin_repos.html", repos=repos, error=error, values=values, forges=FORGES,
                           kinds=CREDENTIAL_KINDS, teams=list(Team.select().order_by(Team.name))), (400 if error else 200)


@bp.post("/repositories/<int:repo_id>/remove")
def remove_repository(repo_id):
    """Refused (409, the error page names the sessions) while sessions use it."""
    require_admin()
    removal.remove_repository(repo_id)
    return _flash_redirect("console_admin.repositories")


@bp.post("/repositories/<int:repo_id>/credential")
def repository_credential(repo_id):
    """Replace (or clear) a repository's credential; the old one is never shown."""
    require_admin()
    repo = Repository.get_or_none(Repository.id == repo_id)
    if repo is None:
        raise NotFound(f"no repository {repo_id}")
    kind = request.form.get("credential_kind", "none")
    if kind not in CREDENTIAL_KINDS:
        raise Invalid(f"unknown credential kind {kind!r}")
    secret = request.form.get("credential_secret", "")
    if kind != "none" and not secret:
        raise Invalid("type the new secret", hint="the stored one is never shown back")
    Repository.update(credential_kind=kind, credential_secret=secret or None,
                      credential_username=request.form.get("credential_username", "")).where(
        Repository.id == repo.id).execute()
    return _flash_redirect("console_admin.repositories")


# --- model API credentials ------------------------------------------------------------------------

@bp.route("/credentials", methods=["GET", "POST"])
def credentials():
    require_admin()
    store = services().credentials
    error = None
    try:
        creds = store.read()
    except ValueError as e:
        creds, error = {}, str(e)
    if request.method == "POST":
        host = request.form.get("host", "")
        if host not in MODEL_HOSTS:
            raise Invalid(f"unknown model API host {host!r}")
        header, prefix = MODEL_HOSTS[host]
        key = request.form.get("key", "").strip()
        if request.form.get("action") == "remove":
            creds.pop(host, None)
        elif not key:
            raise Invalid("type the key", hint="the stored one is never shown back")
        else:
            creds[host] = {header: prefix + key}
        try:
            store.write(creds)
        except ValueError as e:
            raise Invalid(str(e)) from e
        return _flash_redirect("console_admin.credentials")
    return render_template("console/admin_credentials.html", hosts=MODEL_HOSTS, configured=set(creds),
                           path=store.path, error=error)


@bp.route("/limits", methods=["GET", "POST"])
def limits():
    require_admin()
    cfg = services().config
    if request.method == "POST":
        values = {}
        for field in LIMIT_FIELDS:
            raw = request.form.get(field, "").strip()
            try:
                values[field] = int(raw) if raw else None  # empty: the configuration's value
            except ValueError:
                raise Invalid(f"max_{field} must be a whole number, got {raw!r}") from None
        GuestLimits.save_override(cfg, **values)
        return _flash_redirect("console_admin.limits")
    return render_template("console/admin_limits.html", limits=GuestLimits.from_config(cfg), cfg=cfg,
                           fields=LIMIT_FIELDS)
