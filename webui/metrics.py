"""`/metrics`: Prometheus text (appliance/metrics.py) for admins' tokens, or callers on this host."""

from __future__ import annotations

import ipaddress

from flask import Blueprint, Response, jsonify, request

from appliance import metrics as appliance_metrics

from .app import services
from .auth import current_user

bp = Blueprint("metrics", __name__)


def may_read_metrics() -> bool:
    """Admins' tokens anywhere; without a token only callers on loopback that did not come through
    a reverse proxy (no Forwarded / X-Forwarded-For header), e.g. a Prometheus on this host."""
    user = current_user()
    if user is not None:
        return bool(user.is_admin)
    if request.headers.get("Forwarded") or request.headers.get("X-Forwarded-For"):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
def metrics():
    if not may_read_metrics():
        return jsonify({"error": "metrics are for admins and for callers on this host",
                        "hint": "send an admin's token, or scrape from the appliance host itself"}), 403
    return Response(appliance_metrics.render(services().config), mimetype="text/plain; version=0.0.4")
