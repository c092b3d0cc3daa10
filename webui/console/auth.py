"""Sign in and out. Passwords are werkzeug hashes; the session cookie is signed and HttpOnly.
Every password sign-in is audited and rate limited (appliance/accounts/signin.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.security import check_password_hash

from appliance.accounts import signin
from appliance.accounts.models import User

from ..app import services
from . import csrf_token, password_stamp, viewer

bp = Blueprint("console_auth", __name__)

# a hash to compare against when the user does not exist, so both cases take the same time
_DUMMY = "scrypt:32768:8:1$Ym9ndXNib2d1cw$" + "0" * 128


def _safe_next(target: str | None) -> str:
    """`target` if it is a path on this console, else the sessions page. Browsers drop tabs and
    newlines inside URLs and read '\\' as '/', so `/<TAB>/evil.example` would lead to
    //evil.example: any control character, space or backslash makes the target unsafe (and CR/LF
    could split the Location header)."""
    if (target and target.startswith("/") and not target.startswith("//")
            and not any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in target)):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("console_sessions.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        policy = signin.SigninPolicy.from_config(services().config)
        address, agent = request.remote_addr or "", request.headers.get("User-Agent", "")
        refusal = policy.refusal(username, address)
        if refusal is not None:  # checked before the password: a locked account's right password is refused too
            policy.record(username, address, refusal.outcome, user_agent=agent)
            page = render_template("console/login.html", error=refusal.message, no_account=False)
            return page, 429, {"Retry-After": str(refusal.retry_after())}
        user = User.get_or_none(User.username == username)
        ok = check_password_hash(user.password_hash if user and user.password_hash else _DUMMY, password)
        outcome = signin.OK if user is not None and user.password_hash and ok else (
            signin.WRONG_PASSWORD if user is not None else signin.UNKNOWN_USER)
        policy.record(username, address, outcome, user=user, user_agent=agent)
        if outcome == signin.OK and user.disabled:  # audited as a success of the password, then refused
            return render_template("console/login.html", error="This account is disabled. Ask an admin.",
                                   no_account=False), 403
        if outcome == signin.OK:
            session.clear()
            session["uid"] = user.id
            session["pw"] = password_stamp(user)
            csrf_token()  # a fresh token for the signed-in session
            return redirect(_safe_next(request.args.get("next")))
        error = "Wrong user name or password."
    elif viewer() is not None:
        return redirect(_safe_next(request.args.get("next")))
    # a new appliance has nobody to sign in as: the page says how to make the first admin
    no_account = not User.select().exists()
    return render_template("console/login.html", error=error, no_account=no_account), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console_auth.login"))
