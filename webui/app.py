"""Flask app factory: configuration layered defaults < appliance config < test overrides."""

from __future__ import annotations

from flask import Flask, jsonify

import appliance


def create_app(config=None, test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config["APPLIANCE"] = config
    if test_config:
        app.config.update(test_config)

    @app.get("/healthz")
    def healthz():
        # Liveness only: says nothing about sandboxes, so it needs no caller identity.
        return jsonify(status="ok", version=appliance.__version__)

    return app
