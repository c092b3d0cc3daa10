"""The signed-in user's API tokens (`appliance login` points here): make one (shown once, on the
page that made it), see the live ones, revoke one. Someone else's token does not exist here (404)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.accounts import tokens
from appliance.accounts.models import ApiToken
from appliance.errors import ApplianceError, Invalid, NotFound

from . import require_user

bp = Blueprint("console_tokens", __name__)


def _page(user, new_token: str | None = None, error: str | None = None, status: int = 200):
    return render_template("console/tokens.html", tokens=tokens.live(user), new_token=new_token, error=error,
                           default_days=tokens.DEFAULT_DAYS, max_days=tokens.MAX_DAYS), status


@bp.get("/tokens")
def index():
    return _page(require_user())


@bp.post("/tokens")
def create():
    user = require_user()
    raw_days = request.form.get("days", "").strip()
    try:
        if raw_days and not raw_days.isdigit():
            raise Invalid(f"days must be a whole number, got {raw_days[:20]!r}")
        token = tokens.issue(user, request.form.get("name", ""), days=int(raw_days) if raw_days else None)
    except ApplianceError as e:
        return _page(user, error=e.message + (f" — {e.hint}" if e.hint else ""), status=400)
    return _page(user, new_token=token)


@bp.post("/tokens/<int:token_id>/revoke")
def revoke(token_id):
    user = require_user()
    row = ApiToken.get_or_none((ApiToken.id == token_id) & (ApiToken.user == user))
    if row is None:
        raise NotFound(f"no token {token_id}")
    tokens.revoke(user, row.id)
    return redirect(url_for("console_tokens.index"))
