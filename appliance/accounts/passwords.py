"""Setting a password: hashed, and every API token of the user revoked with it (a password is
changed because something leaked; the tokens made while it was known go too)."""

from __future__ import annotations

from werkzeug.security import generate_password_hash

from ..errors import Invalid
from . import tokens
from .models import User

MIN_PASSWORD = 8


def set_password(user: User, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"a password needs at least {MIN_PASSWORD} characters")
    User.update(password_hash=generate_password_hash(password)).where(User.id == user.id).execute()
    tokens.revoke_all(user)
