"""What HTTPS asks of the app: the session cookie only over TLS, and HSTS on every TLS answer.

The cookie is `Secure` whenever the appliance is configured with a certificate (a browser then never
sends it in clear, even to a plain-HTTP redirect port); HSTS tells browsers to use HTTPS from then on.
"""

from __future__ import annotations

from flask import Flask, request

HSTS = "max-age=31536000"  # one year; no includeSubDomains: the appliance does not own its parent domain


def register(app: Flask) -> None:
    cfg = app.extensions["appliance"].config
    # assigned, not setdefault: Flask's own defaults (Secure off, no SameSite) are already there
    app.config["SESSION_COOKIE_SECURE"] = bool(cfg is not None and cfg.tls_cert)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"

    @app.after_request
    def _hsts(response):
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
