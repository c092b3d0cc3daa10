"""Flask app factory: the app is given its services (one typed `Services` object) and serves the
REST API, the console and the operational routes over them."""

from __future__ import annotations

from flask import Flask, current_app, jsonify, render_template, request

import appliance
from appliance.db import database
from appliance.services import Services


def create_app(services: Services, test_config: dict | None = None) -> Flask:
    """`services`: what the routes work with (the daemon builds it; tests build their own).
    `test_config`: Flask settings only (e.g. TESTING, SECRET_KEY)."""
    if not isinstance(services, Services):
        raise TypeError("create_app needs a Services object (appliance.services.Services.build(config))")
    app = Flask(__name__)
    app.extensions["appliance"] = services
    # no request body is larger (werkzeug answers 413 before a route reads it)
    app.config["MAX_CONTENT_LENGTH"] = services.config.max_request_mb * 1024 * 1024
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

    from . import (
        cluster,
        console,
        environment_caches,
        forge_hooks,
        groups,
        guest_templates,
        me,
        metrics,
        spend,
        terminal,
        transcript,
        transport,
    )
    from .api import api

    transport.register(app)  # HTTPS: Secure cookie, HSTS
    for blueprint in (api, me.bp, transcript.bp, terminal.bp, metrics.bp, spend.bp, groups.bp, forge_hooks.bp,
                      guest_templates.bp, environment_caches.bp, cluster.bp):
        app.register_blueprint(blueprint)
    console.register(app)  # the web console (pages, websockets)

    @app.errorhandler(413)
    def _too_large(_e):
        limit = app.config.get("MAX_CONTENT_LENGTH") or 0
        message = f"the request body is larger than this appliance accepts ({limit // (1024 * 1024)} MB)"
        hint = "send less (a prompt, script or comment of this size belongs in the repository), or ask an " \
               "admin to raise max_request_mb"
        if request.path.startswith("/api/"):
            return jsonify(error=message, hint=hint), 413
        return render_template("console/error.html", message=message, hint=hint, status=413), 413

    return app


def services() -> Services:
    """The running app's services."""
    return current_app.extensions["appliance"]
