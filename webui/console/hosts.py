"""Admin page: the worker hosts of a cluster (README "More than one server") — capacity, running
turns, heartbeat, version — draining one (no new turns there; running ones finish), and minting a
join token for a new host (shown once, with the exact `appliance worker --join` command)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.cluster import hosts
from appliance.cluster import join as host_join
from appliance.errors import Invalid

from ..app import services
from . import require_admin

bp = Blueprint("console_hosts", __name__, url_prefix="/admin")


@bp.get("/hosts")
def index(joining: dict | None = None):
    require_admin()
    cfg = services().config
    return render_template("console/admin_hosts.html", hosts=hosts.list_hosts(cfg.host_stale_after),
                           clustered=cfg.clustered, stale_after=cfg.host_stale_after, joining=joining,
                           default_ttl=host_join.DEFAULT_TTL_MINUTES)


@bp.post("/hosts/join-token")
def join_token():
    admin = require_admin()
    cfg = services().config
    ttl = request.form.get("ttl_minutes", "").strip()
    if ttl and not ttl.isdigit():
        raise Invalid("the join token's lifetime must be a whole number of minutes", hint="e.g. 60")
    token, row = host_join.mint(cfg, admin.username, int(ttl) if ttl else None)
    # rendered once, in this answer only: the page the admin comes back to never shows it again
    page = index(joining={"token": token, "expires_at": row.expires_at,
                          "command": host_join.join_command(cfg, token, request.host_url)})
    return page, 200, {"Cache-Control": "no-store"}  # no copy of the token in a browser cache


@bp.post("/hosts/<host_id>/drain")
def drain(host_id):
    require_admin()
    hosts.set_draining(host_id, request.form.get("draining", "1") == "1")
    return redirect(url_for("console_hosts.index"))
