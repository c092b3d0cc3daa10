"""Setting a password: hashed, and every API token of the user revoked with it (a password is
changed because something leaked; the tokens made while it was known go too)."""

from __future__ import annotations

from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import Forbidden, Invalid
from . import tokens
from .models import User

MIN_PASSWORD = 8


def set_password(user: User, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"a password needs at least {MIN_PASSWORD} characters")
    User.update(password_hash=generate_password_hash(password)).where(User.id == user.id).execute()
    tokens.revoke_all(user)


def change_own_password(user: User, current: str, new: str) -> User:
    """A user changes their own password: the current one must be typed (a browser left signed in
    must not be enough to take the account over). Every API token goes with the old password
    (`set_password`); the web sessions of the old password stop working too (the console compares
    each session's password stamp), so the caller re-stamps the session it wants to keep."""
    if not user.password_hash or not check_password_hash(user.password_hash, current or ""):
        raise Forbidden("the current password is wrong; the password was not changed",
                        hint="type the password you signed in with")
    if new == current:
        raise Invalid("the new password is the current one", hint="choose a different password")
    set_password(user, new or "")
    return User.get_by_id(user.id)
