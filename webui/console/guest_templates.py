"""Admin page: the guest templates guests start from (state, profile, made at, build time, size,
users), the warm pool's slots, the environment caches, and dropping a template or a cache (README
"Warm start")."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

from appliance import template_admin
from appliance.sessions import envcache

from ..app import services
from . import require_admin

bp = Blueprint("console_templates", __name__, url_prefix="/admin")


@bp.get("/templates")
def index():
    require_admin()
    cfg = services().config
    return render_template("console/admin_templates.html", templates=template_admin.list_templates(cfg),
                           pool=template_admin.pool_status(cfg), templated=cfg.templated,
                           template_dir=cfg.template_dir, caches=[envcache.view(c) for c in envcache.list_caches()],
                           caching=cfg.environment_cache == "on")


@bp.post("/templates/<key>/drop")
def drop(key):
    require_admin()
    template_admin.drop_template(services().config, key)
    return redirect(url_for("console_templates.index"))


@bp.post("/envcaches/<int:cache_id>/drop")
def drop_cache(cache_id: int):
    require_admin()
    envcache.drop_cache(cache_id)
    return redirect(url_for("console_templates.index"))
