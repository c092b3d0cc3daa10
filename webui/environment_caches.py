"""`/api/v1/admin/envcaches`: the environment caches (guest disks kept after an environment's setup;
appliance/sessions/envcache.py, README "Warm start") and dropping one. Admins only: 401 without a
token, 403 for other users."""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance.errors import ApplianceError, Forbidden
from appliance.sessions import envcache

from .api import appliance_error, require_token
from .auth import current_user

bp = Blueprint("environment_caches", __name__, url_prefix="/api/v1/admin/envcaches")
bp.register_error_handler(ApplianceError, appliance_error)
bp.before_request(require_token)


@bp.before_request
def _admins_only():
    if not current_user().is_admin:
        raise Forbidden("only admins see and drop environment caches", hint="ask an admin")


@bp.get("")
def list_caches():
    return jsonify(caches=[envcache.view(c) for c in envcache.list_caches()])


@bp.post("/<int:cache_id>/drop")
def drop_cache(cache_id: int):
    return jsonify(cache=envcache.view(envcache.drop_cache(cache_id)))
