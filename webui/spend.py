"""`/api/v1/…/usage` and `/api/v1/admin/spend|budgets`: model API spend as the egress proxy metered
it (appliance/spend/). A session's usage is for its owner and admins; a user's for themselves;
everyone's and the budgets for admins."""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance.errors import ApplianceError, NotFound
from appliance.sessions.spend import budgets, report

from .api import appliance_error, json_body, require_token
from .app import services
from .auth import current_user

bp = Blueprint("spend", __name__, url_prefix="/api/v1")
bp.register_error_handler(ApplianceError, appliance_error)
bp.before_request(require_token)


def _admin():
    user = current_user()
    if not user.is_admin:
        raise NotFound("no such resource", hint="spend across users is for admins")
    return user


@bp.get("/me/usage")
def my_usage():
    return jsonify(report.mine(services().config, current_user()))


@bp.get("/sessions/<session_id>/usage")
def session_usage(session_id):
    session = services().sessions.owned(current_user(), session_id)  # others: 404, as if it did not exist
    return jsonify(report.of_session(services().config, session))


@bp.get("/admin/spend")
def all_spend():
    _admin()
    return jsonify(report.everyone(services().config))


@bp.put("/admin/budgets")
def set_budget():
    _admin()
    data = json_body()
    budgets.set_budget(data["scope"], data["name"], data.get("monthly_usd"))
    return jsonify(report.everyone(services().config))
