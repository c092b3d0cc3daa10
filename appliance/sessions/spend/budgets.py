"""Monthly budgets per user and per team, and the admission check that enforces them.

A user's budget is the one an admin set for them, else `user_monthly_budget_usd`; a team's the
one set for it, else `team_monthly_budget_usd`; 0 means none. At the limit — the user's own, or
any of their teams' — new sessions and new turns are refused with the figures and the date the
month turns; a turn already running finishes (the proxy never cuts a model request short).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ...accounts.models import Team, TeamMember, User
from ...db import utcnow
from ...errors import Forbidden, Invalid, NotFound
from . import meter
from .models import Budget


class BudgetExceeded(Forbidden):
    """A monthly budget is used up: no new turns until the month turns or an admin raises it."""


@dataclass
class BudgetStatus:
    scope: str  # user | team
    name: str
    used_usd: float
    budget_usd: float  # 0: none

    @property
    def exceeded(self) -> bool:
        return self.budget_usd > 0 and self.used_usd >= self.budget_usd

    def as_dict(self) -> dict:
        return {"scope": self.scope, "name": self.name, "used_usd": round(self.used_usd, 4),
                "budget_usd": self.budget_usd or None, "exceeded": self.exceeded}


def user_budget(config, user: User) -> float:
    row = Budget.get_or_none(Budget.user == user)
    return row.monthly_usd if row is not None else config.user_monthly_budget_usd


def team_budget(config, team: Team) -> float:
    row = Budget.get_or_none(Budget.team == team)
    return row.monthly_usd if row is not None else config.team_monthly_budget_usd


def statuses(config, user: User, now: dt.datetime | None = None) -> list[BudgetStatus]:
    """The user's own budget and each of their teams', with this month's use."""
    out = [BudgetStatus("user", user.username, meter.user_month(config, user, now).cost_usd,
                        user_budget(config, user))]
    for team in Team.select().join(TeamMember).where(TeamMember.user == user).order_by(Team.name):
        budget = team_budget(config, team)
        used = meter.team_month(config, team, now).cost_usd if budget > 0 else 0.0
        out.append(BudgetStatus("team", team.name, used, budget))
    return out


def check_admission(config, user: User, now: dt.datetime | None = None) -> None:
    """Refuse a new session or turn when a budget of `user` is used up (BudgetExceeded)."""
    for status in statuses(config, user, now):
        if status.exceeded:
            whose = "your" if status.scope == "user" else f"team {status.name}'s"
            raise BudgetExceeded(
                f"{whose} monthly model budget is used up (${status.used_usd:.2f} of ${status.budget_usd:.2f}); "
                f"no new turns until {meter.next_month(now):%Y-%m-%d} (UTC)",
                hint="ask an admin to raise the budget (Admin → Spend); turns already running finish")


def set_budget(scope: str, name: str, monthly_usd: float | None) -> Budget | None:
    """An admin sets (or with None clears, back to the default) a user's or team's monthly budget."""
    if scope not in ("user", "team"):
        raise Invalid(f"unknown budget scope {scope!r}", hint="use 'user' or 'team'")
    model = User if scope == "user" else Team
    key = User.username if scope == "user" else Team.name
    subject = model.get_or_none(key == name)
    if subject is None:
        raise NotFound(f"no {scope} named {name!r}", hint=f"see the admin page's list of {scope}s")
    column = Budget.user if scope == "user" else Budget.team
    if monthly_usd is None:
        Budget.delete().where(column == subject).execute()
        return None
    try:
        monthly_usd = float(monthly_usd)
    except (TypeError, ValueError):
        raise Invalid("monthly_usd must be a number of US dollars (0: no budget)") from None
    if not 0 <= monthly_usd < 1e9:
        raise Invalid("monthly_usd must be 0 (no budget) or more", hint="e.g. 200 for $200 a month")
    row = Budget.get_or_none(column == subject)
    if row is None:
        return Budget.create(**{scope: subject}, monthly_usd=monthly_usd)
    Budget.update(monthly_usd=monthly_usd, updated_at=utcnow()).where(Budget.id == row.id).execute()
    return Budget.get_by_id(row.id)
