"""Usage totals and their estimated cost, read from the rows the egress proxy metered.

A row names the session its sandbox served (set by the host when the guest was attached, never by
the guest); the session names its owner; a team's usage is its members' usage together. Months are
calendar months in UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import peewee

from appliance_base.prices import parse_prices, price_of
from netpolicy.usage import ModelUsage

from ...accounts.models import Team, TeamMember, User
from ...db import utcnow
from ..models import Session

TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass
class Spend:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    by_model: dict[str, float] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(getattr(self, k) for k in TOKENS)

    def as_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in TOKENS}, "cost_usd": round(self.cost_usd, 4)}


def month_start(now: dt.datetime | None = None) -> dt.datetime:
    now = now or utcnow()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(now: dt.datetime | None = None) -> dt.datetime:
    start = month_start(now)
    return (start + dt.timedelta(days=32)).replace(day=1)


def _totals(config, where, group=None) -> dict:
    """{group key (or None): Spend} for the usage rows matching `where`, joined to their sessions."""
    prices = parse_prices(config.model_prices)
    sums = [peewee.fn.COALESCE(peewee.fn.SUM(getattr(ModelUsage, k)), 0) for k in TOKENS]
    keys = [group] if group is not None else []
    query = (ModelUsage.select(*keys, ModelUsage.model, *sums)
             .join(Session, on=(ModelUsage.session_id == Session.id)).where(where)
             .group_by(*keys, ModelUsage.model).tuples())
    out: dict = {}
    for row in query:
        key = row[0] if group is not None else None
        model, counts = row[len(keys)], [int(n) for n in row[len(keys) + 1:]]
        spend = out.setdefault(key, Spend())
        unit = price_of(prices, model or "")
        cost = sum(n * p for n, p in zip(counts, unit, strict=True)) / 1e6
        for k, n in zip(TOKENS, counts, strict=True):
            setattr(spend, k, getattr(spend, k) + n)
        spend.cost_usd += cost
        spend.by_model[model or "?"] = spend.by_model.get(model or "?", 0.0) + cost
    return out


def session_spend(config, session_ids: list[str]) -> dict[str, Spend]:
    return _totals(config, Session.id.in_(session_ids), Session.id) if session_ids else {}


def user_month(config, user: User, now: dt.datetime | None = None) -> Spend:
    where = (Session.owner == user) & (ModelUsage.time >= month_start(now))
    return _totals(config, where).get(None, Spend())


def team_month(config, team: Team, now: dt.datetime | None = None) -> Spend:
    members = TeamMember.select(TeamMember.user).where(TeamMember.team == team)
    where = Session.owner.in_(members) & (ModelUsage.time >= month_start(now))
    return _totals(config, where).get(None, Spend())


def users_month(config, now: dt.datetime | None = None) -> dict[int, Spend]:
    """Every user's spend this month, by user id (for the admin page and /metrics)."""
    return _totals(config, ModelUsage.time >= month_start(now), Session.owner)


def teams_month(config, now: dt.datetime | None = None) -> dict[int, Spend]:
    """Every team's spend this month (its members' together), by team id."""
    by_user = users_month(config, now)
    out: dict[int, Spend] = {}
    for team_id, user_id in TeamMember.select(TeamMember.team, TeamMember.user).tuples():
        if user_id in by_user:
            total, add = out.setdefault(team_id, Spend()), by_user[user_id]
            for k in (*TOKENS, "cost_usd"):
                setattr(total, k, getattr(total, k) + getattr(add, k))
    return out
