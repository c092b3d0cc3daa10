"""API tokens: named, expiring, revocable. The token is shown once; only its SHA-256 is stored.

Who revokes: the owner on the console's API tokens page, an admin with `appliance user token
--revoke`, and every password change (`accounts.passwords.set_password`) revokes all of a user's
tokens, so a leaked token dies with the password that was changed because of it.
"""

from __future__ import annotations

import datetime as dt
import secrets

from ..db import utcnow
from ..errors import Invalid, NotFound
from .models import ApiToken, User, hash_token

PREFIX = "apl_"
DEFAULT_DAYS = 90
MAX_DAYS = 3650


def issue(user: User, name: str, days: int | None = None) -> str:
    """A new token for `user` named `name`, valid `days` days (default 90)."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise Invalid("a token needs a name of 1 to 64 characters", hint="say where it is used, e.g. 'laptop'")
    days = DEFAULT_DAYS if days is None else days
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise Invalid(f"a token lives 1 to {MAX_DAYS} days, not {days!r}", hint=f"the default is {DEFAULT_DAYS}")
    token = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    ApiToken.create(user=user, name=name, token_hash=hash_token(token), created_at=now,
                    expires_at=now + dt.timedelta(days=days))
    return token


def user_for(token: str) -> User | None:
    """The user of a live token (not revoked, not expired) who is not disabled; None for anything else.
    Checked on every request, so disabling a user stops their tokens at once."""
    if not token:
        return None
    now = utcnow()
    row = ApiToken.get_or_none((ApiToken.token_hash == hash_token(token)) & (ApiToken.revoked == False)  # noqa: E712
                               & (ApiToken.expires_at > now))
    if row is None or row.user.disabled:
        return None
    ApiToken.update(last_used_at=now).where(ApiToken.id == row.id).execute()
    return row.user


def live(user: User) -> list[ApiToken]:
    """`user`'s tokens that still work, newest first."""
    return list(ApiToken.select().where((ApiToken.user == user) & (ApiToken.revoked == False)  # noqa: E712
                                        & (ApiToken.expires_at > utcnow()))
                .order_by(ApiToken.created_at.desc(), ApiToken.id.desc()))


def revoke(user: User, which: str | int) -> int:
    """Revoke `user`'s live tokens with this id or name; NotFound if there is none."""
    ids = [t.id for t in live(user) if str(t.id) == str(which) or t.name == str(which)]
    if not ids:
        raise NotFound(f"{user.username} has no live token {which!r}",
                       hint="list them with 'appliance user token NAME --list' or on the API tokens page")
    return ApiToken.update(revoked=True).where(ApiToken.id.in_(ids)).execute()


def revoke_all(user: User) -> int:
    return ApiToken.update(revoked=True).where((ApiToken.user == user) & (ApiToken.revoked == False)).execute()  # noqa: E712
