"""The signed-in user's account page: their own password (the current one required) and where they
hear that a turn ended (webhook, e-mail, browser notification). There is no user id in these
routes: everyone changes only their own account."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for

from appliance.accounts import passwords
from appliance.errors import ApplianceError, Forbidden
from appliance.sessions import notify_settings
from appliance.sessions.spend import report

from ..app import services
from . import password_stamp, require_user

bp = Blueprint("console_account", __name__)


def _page(user, error: str | None = None, done: str | None = None, status: int = 200):
    return render_template("console/account.html", user=user, error=error, done=done,
                           min_password=passwords.MIN_PASSWORD,
                           mine=report.mine(services().config, user)), status


def _said(e: ApplianceError) -> str:
    return e.message + (f" — {e.hint}" if e.hint else "")


@bp.get("/account")
def index():
    return _page(require_user(), done=request.args.get("done"))


@bp.post("/account/password")
def change_password():
    user = require_user()
    new = request.form.get("new_password", "")
    if new != request.form.get("new_password_again", ""):
        return _page(user, error="the two new passwords differ; nothing was changed", status=400)
    try:
        user = passwords.change_own_password(user, request.form.get("current_password", ""), new)
    except ApplianceError as e:
        return _page(user, error=_said(e), status=403 if isinstance(e, Forbidden) else 400)
    # this browser stays signed in; every other one carries the old password's stamp and is signed out
    session["pw"] = password_stamp(user)
    return redirect(url_for("console_account.index", done="password"))


@bp.post("/account/notifications")
def notifications():
    user = require_user()
    form = request.form
    try:
        notify_settings.save(user, {"webhook_url": form.get("webhook_url", ""), "email": form.get("email", ""),
                                    "notify_browser": form.get("notify_browser") == "on"},
                             services().config.webhook_allowed_networks)
    except ApplianceError as e:
        return _page(user, error=_said(e), status=400)
    return redirect(url_for("console_account.index", done="notifications"))
