"""The web console: server-rendered pages, one blueprint per feature, plus two websockets.

`register(app)` adds it to the app made by `webui.create_app`. Signed-in users are kept in Flask's
signed cookie session; every form and state-changing request carries the session's CSRF token.
Anything a user may not see is a 404, like something that does not exist.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for

from appliance.accounts.models import User
from appliance.errors import ApplianceError, Conflict, Forbidden, Invalid, NotFound
from appliance.sessions.models import Status

from ..app import services

CONSOLE_BLUEPRINTS = ("console_auth", "console_sessions", "console_envs", "console_admin", "console_assets",
                      "console_merge_requests", "console_tokens", "console_signins", "console_spend",
                      "console_groups", "console_account", "console_forges", "console_hosts",
                      "console_templates")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def secret_key(state_dir: Path) -> bytes:
    """A random key kept 0600 in `<state_dir>/console-secret`, made on first use."""
    path = Path(state_dir) / "console-secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key
    except FileExistsError:  # pragma: no cover - a concurrent first start
        return path.read_bytes()


def viewer() -> User | None:
    """The signed-in user of this request (console cookie), or None."""
    if "console_user" not in g:
        g.console_user = None
        uid = session.get("uid")
        if uid is not None:
            user = User.get_or_none(User.id == uid)
            # a password change, removal or disabling signs every browser out
            if user is not None and not user.disabled and session.get("pw") == password_stamp(user):
                g.console_user = user
    return g.console_user


def password_stamp(user: User) -> str:
    return (user.password_hash or "")[-12:]


def require_user() -> User:
    user = viewer()
    if user is None:
        raise _Redirect(redirect(url_for("console_auth.login", next=request.full_path.rstrip("?"))))
    return user


def require_admin() -> User:
    user = require_user()
    if not user.is_admin:
        raise NotFound("no such page")
    return user


class _Redirect(Exception):
    def __init__(self, response):
        self.response = response


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf")
    if not expected or not secrets.compare_digest(sent, expected):
        abort(400, description="the form expired or did not come from this site (CSRF check failed); reload the page")


def register(app: Flask) -> None:
    from flask_sock import Sock

    cfg = app.extensions["appliance"].config
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key(cfg.state_dir)
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["viewer"] = viewer
    app.jinja_env.globals["Status"] = Status  # templates test statuses by name, from the one list
    app.jinja_env.filters["urlencode_page"] = lambda args, page: urlencode(
        [(k, v) for k, v in args.items(multi=True) if k not in ("page", "partial")] + [("page", page)])

    @app.before_request
    def _console_csrf():
        if request.blueprint in CONSOLE_BLUEPRINTS and request.method not in SAFE_METHODS:
            check_csrf()

    from . import (
        account,
        admin,
        assets,
        auth,
        environments,
        forge_admin,
        groups,
        guest_templates,
        hosts,
        merge_requests,
        sessions,
        signins,
        spend,
        stream,
        terminal,
        tokens,
    )

    for bp in (auth.bp, sessions.bp, environments.bp, admin.bp, assets.bp, merge_requests.bp, tokens.bp, signins.bp,
               spend.bp, groups.bp, account.bp, forge_admin.bp, hosts.bp,
               guest_templates.bp):
        app.register_blueprint(bp)

    @app.errorhandler(_Redirect)
    def _redirect(e):
        return e.response

    @app.errorhandler(ApplianceError)
    def _error(e: ApplianceError):
        if request.blueprint not in CONSOLE_BLUEPRINTS:
            raise e  # the API blueprint has its own handler; anything else is a real error
        status = (404 if isinstance(e, NotFound) else 403 if isinstance(e, Forbidden)
                  else 409 if isinstance(e, Conflict) else 400)
        return render_template("console/error.html", message=e.message, hint=e.hint, status=status), status

    sock = Sock(app)
    stream.register(sock)
    terminal.register(sock)

    @app.errorhandler(400)
    def _bad_request(e):
        if request.blueprint in CONSOLE_BLUEPRINTS:
            return render_template("console/error.html", message=e.description, hint="", status=400), 400
        return e

    @app.errorhandler(404)
    def _not_found(e):
        if request.path.startswith("/api/"):
            return e
        return render_template("console/error.html", message="Not found", hint="", status=404), 404


def sessions_service():
    return services().sessions


__all__ = ["register", "viewer", "require_user", "require_admin", "csrf_token", "Invalid", "current_app"]
