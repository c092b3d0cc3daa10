"""Admin page: the worker hosts of a cluster (README "More than one server") — capacity, running
turns, heartbeat, version — and draining one (no new turns there; running ones finish)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.cluster import hosts

from ..app import services
from . import require_admin

bp = Blueprint("console_hosts", __name__, url_prefix="/admin")


@bp.get("/hosts")
def index():
    require_admin()
    cfg = services().config
    return render_template("console/admin_hosts.html", hosts=hosts.list_hosts(cfg.host_stale_after),
                           clustered=cfg.clustered, stale_after=cfg.host_stale_after)


@bp.post("/hosts/<host_id>/drain")
def drain(host_id):
    require_admin()
    hosts.set_draining(host_id, request.form.get("draining", "1") == "1")
    return redirect(url_for("console_hosts.index"))
