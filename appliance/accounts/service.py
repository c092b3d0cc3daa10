"""Creating accounts outside the console (user names, the first admin of a new appliance), and
disabling them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import peewee
from werkzeug.security import generate_password_hash

from ..db import database
from ..errors import Invalid
from .models import ApiToken, User


def check_username(name: str) -> str:
    """The name, stripped, or Invalid saying what a user name may hold."""
    name = name.strip()
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise Invalid(f"{name!r} is not a user name", hint="use 1-64 letters, digits, '.', '-' or '_'")
    return name


@dataclass(frozen=True)
class FirstAdmin:
    user: User
    password: str  # one-time: only its hash is stored, the person changes it in the console
    token: str  # an API token for `appliance login`; only its hash is stored


def create_first_admin(name: str = "admin") -> FirstAdmin | None:
    """An admin with a random password and an API token, when the appliance has no user at all.

    None when any user exists: a first admin is only ever made for an empty appliance, so running
    this again (scripts/run at every start, scripts/install on upgrade) never adds accounts.
    """
    name = check_username(name)
    password = secrets.token_urlsafe(15)
    try:
        with database.atomic():
            if User.select().exists():
                return None
            user = User.create(username=name, is_admin=True, password_hash=generate_password_hash(password))
            token = ApiToken.issue(user, name="first-admin")
    except peewee.IntegrityError:  # a concurrent first run created the same name first
        return None
    return FirstAdmin(user=user, password=password, token=token)


def set_disabled(user: User, disabled: bool, by: User | None = None) -> User:
    """An admin disables (or enables again) a user. A disabled user cannot sign in, and their console
    sign-ins and API tokens stop working at the next request (both are checked on every request);
    their sessions, environments and tokens are kept, so enabling them again restores everything."""
    if disabled and by is not None and by.id == user.id:
        raise Invalid("you cannot disable yourself", hint="ask another admin")
    if disabled and user.is_admin and not User.select().where(
            (User.is_admin == True) & (User.disabled == False) & (User.id != user.id)).exists():  # noqa: E712
        raise Invalid(f"{user.username} is the last admin who is not disabled", hint="make another admin first")
    User.update(disabled=bool(disabled)).where(User.id == user.id).execute()
    return User.get_by_id(user.id)
