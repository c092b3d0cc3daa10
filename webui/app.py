"""Flask app factory: configuration layered defaults < appliance config < test overrides."""

from __future__ import annotations

from flask import Flask, jsonify, request

import appliance
from appliance.db import database


def create_app(config=None, sessions=None, pull_requests=None, test_config: dict | None = None) -> Flask:
    """`sessions` is the SessionService; `pull_requests(user, session_id) -> dict` creates PRs."""
    app = Flask(__name__)
    app.config["APPLIANCE"] = config
    app.config["SESSIONS"] = sessions
    app.config["PULL_REQUESTS"] = pull_requests
    if test_config:
        app.config.update(test_config)

    @app.before_request
    def _db_connect():
        # Not for websockets: they live for minutes and open what they need per message.
        if database.obj is not None and request.headers.get("Upgrade", "").lower() != "websocket":
            database.connect(reuse_if_open=True)

    @app.teardown_request
    def _db_close(_exc):
        if database.obj is not None and not database.is_closed():
            database.close()

    @app.get("/healthz")
    def healthz():
        # Liveness only: says nothing about sandboxes, so it needs no caller identity.
        return jsonify(status="ok", version=appliance.__version__)

    from . import console, transport
    from .api import api
    from .api_extra import api_extra

    transport.register(app)  # HTTPS: Secure cookie, HSTS
    app.register_blueprint(api)
    app.register_blueprint(api_extra)
    console.register(app)  # the web console (pages, websockets)
    return app
