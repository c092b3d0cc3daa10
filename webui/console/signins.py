"""Admin page: the sign-in audit log (successes, failures, refusals while locked or blocked)."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from appliance.accounts import signin

from . import require_admin

bp = Blueprint("console_signins", __name__, url_prefix="/admin")


@bp.get("/signins")
def signins():
    require_admin()
    username = request.args.get("username", "").strip()
    address = request.args.get("address", "").strip()
    events = signin.recent_events(limit=500, username=username, address=address)
    return render_template("console/admin_signins.html", events=events, username=username, address=address,
                           failures=signin.FAILURES)
