"""`/api/v1/cluster/…`: joining worker hosts (appliance/cluster/host_join.py).

`POST /cluster/join` is reached without an API token: the new host proves itself with a single-use
join token in the body (never in the URL, so no access log holds it). Minting a token is for admins.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request, send_file

from appliance.cluster import images
from appliance.cluster import join as host_join
from appliance.errors import ApplianceError, NotFound
from vmimages.store import ImageStore

from .api import Unauthorized, appliance_error, json_body, require_token
from .app import services
from .auth import current_user

bp = Blueprint("cluster", __name__, url_prefix="/api/v1/cluster")
bp.register_error_handler(ApplianceError, appliance_error)


@bp.errorhandler(host_join.JoinRefused)
def _refused(e: host_join.JoinRefused):
    body = {"error": e.message, "hint": e.hint}
    headers = {"Retry-After": str(e.retry_after)} if isinstance(e, host_join.TooManyFailures) else {}
    return jsonify(body), e.status, headers


@bp.post("/join")
def join():
    body = json_body()
    grant = host_join.redeem(services().config, body.get("token") or "", body.get("host_id") or "",
                        request.remote_addr or "")
    return jsonify(grant.as_dict()), 200, {"Cache-Control": "no-store"}  # the database's password


@bp.post("/join-tokens")
def mint_join_token():
    require_token()
    user = current_user()
    if not user.is_admin:
        raise NotFound("no such route")  # like the console's admin pages: a non-admin sees nothing here
    cfg = services().config
    token, row = host_join.mint(cfg, user.username, json_body().get("ttl_minutes"))
    return jsonify(token=token, expires_at=row.expires_at.isoformat() + "Z",
                   command=host_join.join_command(cfg, token, request.host_url)), 201, {"Cache-Control": "no-store"}


def _require_host() -> str:
    header = request.headers.get("Authorization", "")
    host = host_join.host_for(header[len("Bearer "):].strip() if header.startswith("Bearer ") else "")
    if host is None:
        raise Unauthorized("a joined host's credential is required",
                           hint="join control first (appliance worker --join URL --token T)")
    return host


@bp.get("/images")
def image_catalog():
    _require_host()
    return jsonify(images=images.catalog(ImageStore(services().config.image_dir)))


@bp.get("/images/<sha256>")
def image_blob(sha256):
    _require_host()
    path = images.blob(ImageStore(services().config.image_dir), sha256)
    if path is None:
        raise NotFound(f"no image file with SHA-256 {sha256[:64]!r} here",
                       hint="ask for a hash from GET /api/v1/cluster/images")
    return send_file(path, mimetype="application/octet-stream", conditional=False)
