"""`/api/v1/me`: who the token belongs to, and where they hear that a turn ended."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from appliance.accounts import passwords
from appliance.accounts.models import User
from appliance.errors import ApplianceError
from appliance.sessions import notify_settings

from .api import appliance_error, json_body, require_token
from .app import services
from .auth import current_user

bp = Blueprint("me", __name__, url_prefix="/api/v1")
bp.register_error_handler(ApplianceError, appliance_error)
bp.before_request(require_token)


def me_dict(user: User) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "is_admin": user.is_admin, "webhook_url": user.webhook_url, "email": user.email,
            "notify_browser": user.notify_browser}


@bp.get("/me")
def me():
    return jsonify(me_dict(current_user()))


@bp.patch("/me")
def update_me():
    """Where the caller hears that a turn ended: `webhook_url` (http/https), `email`, `notify_browser`."""
    g.user = notify_settings.save(current_user(), json_body(), services().config.webhook_allowed_networks)
    return jsonify(me_dict(current_user()))


@bp.post("/me/password")
def change_password():
    """The caller's own password, with the current one. Every API token of the caller is revoked
    with the old password (this one too) and every console sign-in of the old password ends."""
    data = json_body()
    user = passwords.change_own_password(current_user(), data["current_password"], data["new_password"])
    return jsonify({"changed": True, "tokens_revoked": True,
                    "hint": f"every API token of {user.username} was revoked: make a new one ('appliance login')"})
