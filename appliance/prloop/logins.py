"""Who is who on the forges: an admin maps a forge login to an appliance user, explicitly. Only
mapped logins of users who may use a repository start sessions or auto-fix turns from comments."""

from __future__ import annotations

import re

import peewee

from ..accounts.models import User
from ..errors import Invalid, NotFound
from .models import ForgeLogin
from .signatures import FORGES

LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-\[\]]{0,99}$")  # GitHub bots end in [bot]


def set_forge_login(forge: str, login: str, username: str) -> ForgeLogin:
    login, username = (login or "").strip(), (username or "").strip()
    if forge not in FORGES:
        raise Invalid(f"'forge': unknown forge {forge!r}", hint=f"use one of: {', '.join(FORGES)}")
    if not LOGIN.match(login):
        raise Invalid(f"'login': {login!r} is not a forge login", hint="the user's login name on the forge, e.g. octocat")
    user = User.get_or_none(User.username == username)
    if user is None:
        raise NotFound(f"'username': no appliance user {username!r}", hint="see the users page")
    try:
        return ForgeLogin.create(user=user, forge=forge, login=login)
    except peewee.IntegrityError:
        owner = ForgeLogin.get((ForgeLogin.forge == forge) & (ForgeLogin.login == login)).user.username
        raise Invalid(f"{forge} login {login!r} is already {owner}'s",
                      hint="remove that mapping first; one forge login is one appliance user") from None


def remove_forge_login(mapping_id: int) -> None:
    if ForgeLogin.delete().where(ForgeLogin.id == mapping_id).execute() == 0:
        raise NotFound(f"no forge login mapping {mapping_id}")


def forge_logins(forge: str) -> list[ForgeLogin]:
    return list(ForgeLogin.select().where(ForgeLogin.forge == forge).order_by(ForgeLogin.login))
