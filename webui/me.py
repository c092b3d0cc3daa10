"""`/api/v1/me`: who the token belongs to, and where they hear that a turn ended."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from appliance.accounts.models import User
from appliance.errors import ApplianceError, Invalid
from appliance.sessions import notify, webhook

from .api import appliance_error, json_body, require_token
from .app import services
from .auth import current_user

bp = Blueprint("me", __name__, url_prefix="/api/v1")
bp.register_error_handler(ApplianceError, appliance_error)
bp.before_request(require_token)


def me_dict(user: User) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "is_admin": user.is_admin, "webhook_url": user.webhook_url, "email": user.email}


@bp.get("/me")
def me():
    return jsonify(me_dict(current_user()))


@bp.patch("/me")
def update_me():
    """Where the caller hears that a turn ended: `webhook_url` (http/https) and `email`."""
    data = json_body()
    fields = {}
    if "webhook_url" in data:
        url = str(data["webhook_url"] or "").strip()
        if url:  # only public addresses (loopback, private, link-local, the host itself are refused)
            webhook.check_url(url, services().config.webhook_allowed_networks)
        fields["webhook_url"] = url
    if "email" in data:
        email = str(data["email"] or "").strip()
        if email and not notify.is_one_address(email):
            raise Invalid(f"'email': {email!r} is not exactly one e-mail address",
                          hint="write one address, e.g. alice@example.com")
        fields["email"] = email
    if fields:
        User.update(**fields).where(User.id == current_user().id).execute()
        g.user = User.get_by_id(current_user().id)  # the cached caller is stale now
    return jsonify(me_dict(current_user()))
