"""`/api/v1/admin/templates`: the guest templates guests start from and the warm pool's slots, and
dropping a template (appliance/template_admin.py; README "Warm start"). Admins only: 401 without a
token, 403 for other users."""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance import template_admin
from appliance.errors import ApplianceError, Forbidden

from .api import appliance_error, require_token
from .app import services
from .auth import current_user

bp = Blueprint("guest_templates", __name__, url_prefix="/api/v1/admin/templates")
bp.register_error_handler(ApplianceError, appliance_error)
bp.before_request(require_token)


@bp.before_request
def _admins_only():
    if not current_user().is_admin:
        raise Forbidden("only admins see and drop guest templates", hint="ask an admin")


@bp.get("")
def list_templates():
    cfg = services().config
    return jsonify(templates=[t.to_dict() for t in template_admin.list_templates(cfg)],
                   pool=template_admin.pool_status(cfg).to_dict())


@bp.post("/<key>/drop")
def drop(key):
    return jsonify(template=template_admin.drop_template(services().config, key).to_dict())
