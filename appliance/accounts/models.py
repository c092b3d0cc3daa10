"""Accounts: enough for ownership and authorization (the console adds the pages)."""

from __future__ import annotations

import hashlib

import peewee

from ..db import BaseModel, utcnow


class User(BaseModel):
    username = peewee.CharField(unique=True)
    display_name = peewee.CharField(default="")
    password_hash = peewee.CharField(null=True)  # werkzeug.security hash; None = API-token only
    is_admin = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)
    webhook_url = peewee.CharField(default="")  # POSTed a JSON note when one of their turns ends
    email = peewee.CharField(default="")  # mailed the same note when SMTP is configured
    notify_browser = peewee.BooleanField(default=False)  # the console shows a browser notification too
    disabled = peewee.BooleanField(default=False)  # by an admin: no sign-in, no token works, at once


class Team(BaseModel):
    name = peewee.CharField(unique=True)


class TeamMember(BaseModel):
    team = peewee.ForeignKeyField(Team, backref="members", on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, backref="teams", on_delete="CASCADE")

    class Meta:
        indexes = ((("team", "user"), True),)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(BaseModel):
    """A bearer token; only its hash is stored, the token itself is shown once. Issued, checked and
    revoked by `appliance.accounts.tokens`."""

    user = peewee.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    name = peewee.CharField(default="")
    token_hash = peewee.CharField(unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    last_used_at = peewee.DateTimeField(null=True)
    expires_at = peewee.DateTimeField(null=True)  # set for every token (m0010 gave older ones one); None never works
    revoked = peewee.BooleanField(default=False)

    @classmethod
    def issue(cls, user: User, name: str = "token") -> str:
        """A token with the default lifetime (tests and scripts; people use accounts.tokens.issue)."""
        from .tokens import issue

        return issue(user, name or "token")

    @classmethod
    def user_for(cls, token: str) -> User | None:
        from .tokens import user_for

        return user_for(token)


def team_mates(user: User) -> set[int]:
    """Ids of the users who share at least one team with `user` (including the user)."""
    teams = TeamMember.select(TeamMember.team).where(TeamMember.user == user)
    return {m.user_id for m in TeamMember.select(TeamMember.user).where(TeamMember.team.in_(teams))} | {user.id}
