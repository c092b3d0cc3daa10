"""`POST /hooks/forge/<forge>/<repo_id>`: forge webhook deliveries (GitHub, GitLab, Gitea).

The one route a caller reaches without a console session or an API token: the forge proves itself
with the repository's webhook secret instead (appliance.prloop.hooks checks it, refuses replays and
applies the delivery). Bodies over `forge_webhook_max_kb` are refused before they are read.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from appliance.prloop.hooks import receive

from .app import services

bp = Blueprint("forge_hooks", __name__)


@bp.post("/hooks/forge/<forge>/<int:repo_id>")
def delivery(forge: str, repo_id: int):
    limit = services().config.forge_webhook_max_kb * 1024
    if request.content_length is None:
        return jsonify(error="a webhook delivery must say its length (Content-Length)"), 411
    if request.content_length > limit:
        return jsonify(error=f"a webhook delivery must be at most {limit // 1024} KB"), 413
    body = request.get_data(cache=False)
    if len(body) > limit:
        return jsonify(error=f"a webhook delivery must be at most {limit // 1024} KB"), 413
    status, answer = receive(services().sessions, forge, repo_id, request.headers, body)
    return jsonify(answer), status
