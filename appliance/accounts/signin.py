"""Sign-in protection: every password sign-in is audited, and the audit log is what locks.

An account is locked after `signin_max_failures` failed sign-ins within `signin_window` seconds
(counted since its last success), for `signin_lockout` seconds after the last of them; an address
is blocked after `signin_max_failures_per_address` failures within the window, whatever accounts
they named (password spraying). While locked or blocked, even the right password is refused, and
the refusal is audited without extending the lock. Counting from database rows (not memory) keeps
the limits across restarts and across processes serving the same database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee

from ..db import BaseModel, utcnow
from .models import User

OK = "ok"
WRONG_PASSWORD = "wrong_password"
UNKNOWN_USER = "unknown_user"
LOCKED = "locked"  # refused: the account is locked
BLOCKED = "blocked"  # refused: the address is blocked
# a wrong worker host join token (appliance/cluster/join.py): it counts against the address like a
# wrong password, so guessing join tokens blocks the guesser's address too
BAD_JOIN_TOKEN = "bad_join_token"
FAILURES = (WRONG_PASSWORD, UNKNOWN_USER, BAD_JOIN_TOKEN)
OUTCOMES = (OK, WRONG_PASSWORD, UNKNOWN_USER, LOCKED, BLOCKED, BAD_JOIN_TOKEN)


class SigninEvent(BaseModel):
    time = peewee.DateTimeField(default=utcnow, index=True)
    username = peewee.CharField(index=True)  # as typed (the account may not exist)
    user = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
    address = peewee.CharField(index=True)
    outcome = peewee.CharField()
    user_agent = peewee.CharField(default="")

    class Meta:
        table_name = "signin_event"


@dataclass(frozen=True)
class Refusal:
    outcome: str  # LOCKED or BLOCKED
    until: dt.datetime
    message: str

    def retry_after(self, now: dt.datetime | None = None) -> int:
        return max(1, int((self.until - (now or utcnow())).total_seconds()) + 1)


@dataclass(frozen=True)
class SigninPolicy:
    window: float = 900.0
    max_failures: int = 5
    max_failures_per_address: int = 20
    lockout: float = 900.0
    retention_days: float = 90.0

    @classmethod
    def from_config(cls, cfg) -> SigninPolicy:
        if cfg is None:
            return cls()
        return cls(window=cfg.signin_window, max_failures=cfg.signin_max_failures,
                   max_failures_per_address=cfg.signin_max_failures_per_address, lockout=cfg.signin_lockout,
                   retention_days=cfg.signin_audit_retention_days)

    def refusal(self, username: str, address: str, now: dt.datetime | None = None) -> Refusal | None:
        """Why a sign-in as `username` from `address` must be refused now, or None."""
        now = now or utcnow()
        account = SigninEvent.select(SigninEvent.time).where(SigninEvent.username == username)
        last_ok = account.where(SigninEvent.outcome == OK).order_by(SigninEvent.time.desc()).first()
        failures = account.where(SigninEvent.outcome.in_(FAILURES))
        if last_ok is not None:
            failures = failures.where(SigninEvent.time > last_ok.time)
        until = self._locked_until(failures, self.max_failures, now)
        if until is not None:
            return Refusal(LOCKED, until, f"Too many failed sign-ins for this account: it is locked until "
                           f"{until:%H:%M} UTC ({_minutes(until - now)}). Try again then, or ask an admin.")
        return self.address_refusal(address, now)

    def address_refusal(self, address: str, now: dt.datetime | None = None) -> Refusal | None:
        """Why anything authenticating from `address` must be refused now (too many failures), or None."""
        now = now or utcnow()
        from_address = SigninEvent.select(SigninEvent.time).where(
            (SigninEvent.address == address) & SigninEvent.outcome.in_(FAILURES))
        until = self._locked_until(from_address, self.max_failures_per_address, now)
        if until is not None:
            return Refusal(BLOCKED, until, f"Too many failed sign-ins from your address ({address}): signing in "
                           f"from it is blocked until {until:%H:%M} UTC ({_minutes(until - now)}).")
        return None

    def _locked_until(self, failures: peewee.ModelSelect, limit: int, now: dt.datetime) -> dt.datetime | None:
        # the newest `limit` failures: all within one window means locked until the newest + lockout
        recent = [e.time for e in failures.order_by(SigninEvent.time.desc()).limit(limit)]
        if len(recent) < limit or (recent[0] - recent[-1]).total_seconds() > self.window:
            return None
        until = recent[0] + dt.timedelta(seconds=self.lockout)
        return until if until > now else None

    def record(self, username: str, address: str, outcome: str, user: User | None = None,
               user_agent: str = "") -> SigninEvent:
        assert outcome in OUTCOMES, outcome
        event = SigninEvent.create(username=username[:150], user=user, address=address[:64], outcome=outcome,
                                   user_agent=user_agent[:200])
        cutoff = utcnow() - dt.timedelta(days=self.retention_days)
        SigninEvent.delete().where(SigninEvent.time < cutoff).execute()
        return event


def _minutes(delta: dt.timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    return "about a minute" if minutes == 1 else f"about {minutes} minutes"


def recent_events(limit: int = 200, username: str = "", address: str = "") -> list[SigninEvent]:
    query = SigninEvent.select().order_by(SigninEvent.time.desc(), SigninEvent.id.desc())
    if username:
        query = query.where(SigninEvent.username == username)
    if address:
        query = query.where(SigninEvent.address == address)
    return list(query.limit(limit))
