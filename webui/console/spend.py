"""Spend in the console: the admins' spend page (everyone's month, budgets per user/team); a user's
own month and budgets are on their account page (account.py)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.errors import Invalid
from appliance.sessions.spend import budgets, report

from ..app import services
from . import require_admin

bp = Blueprint("console_spend", __name__)


@bp.route("/admin/spend", methods=["GET", "POST"])
def admin_spend():
    require_admin()
    cfg = services().config
    if request.method == "POST":
        raw = request.form.get("monthly_usd", "").strip()
        try:
            value = float(raw) if raw else None  # empty: back to the configured default
        except ValueError:
            raise Invalid(f"the budget must be a number of US dollars, got {raw[:20]!r}",
                          hint="e.g. 200; 0 for no budget; empty for the default") from None
        budgets.set_budget(request.form.get("scope", ""), request.form.get("name", ""), value)
        return redirect(url_for("console_spend.admin_spend"))
    return render_template("console/admin_spend.html", data=report.everyone(cfg), cfg=cfg)
