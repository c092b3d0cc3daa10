"""What the pages, the API and /metrics show about spend: one place builds the figures."""

from __future__ import annotations

import datetime as dt

from ...accounts.models import Team, User
from ..models import Session
from . import budgets, meter


def mine(config, user: User, now: dt.datetime | None = None) -> dict:
    """A user's month: their spend and every budget that applies to them."""
    return {"month": f"{meter.month_start(now):%Y-%m}",
            "spend": meter.user_month(config, user, now).as_dict(),
            "budgets": [b.as_dict() for b in budgets.statuses(config, user, now)]}


def of_session(config, session: Session) -> dict:
    return {"session": session.id, **meter.session_spend(config, [session.id]).get(session.id, meter.Spend()).as_dict()}


def everyone(config, now: dt.datetime | None = None) -> dict:
    """Every user's and team's month with their budgets (admins)."""
    by_user, by_team = meter.users_month(config, now), meter.teams_month(config, now)
    users = [{"name": u.username, "budget_usd": budgets.user_budget(config, u) or None,
              **by_user.get(u.id, meter.Spend()).as_dict()} for u in User.select().order_by(User.username)]
    teams = [{"name": t.name, "budget_usd": budgets.team_budget(config, t) or None,
              **by_team.get(t.id, meter.Spend()).as_dict()} for t in Team.select().order_by(Team.name)]
    return {"month": f"{meter.month_start(now):%Y-%m}", "users": users, "teams": teams}


def metric_lines(config, label, now: dt.datetime | None = None) -> list[str]:
    """Prometheus lines: this month's estimated spend and tokens per user and team, the budgets
    that are set, and the spend of sessions that are not finished. `label` escapes label values."""
    from ..models import Status

    data = everyone(config, now)
    out = ["# HELP appliance_spend_month_usd Estimated model API spend this calendar month (UTC), metered by the "
           "egress proxy.", "# TYPE appliance_spend_month_usd gauge"]
    for scope in ("users", "teams"):
        out += [f'appliance_spend_month_usd{{{scope[:-1]}="{label(r["name"])}"}} {r["cost_usd"]}' for r in data[scope]]
    out += ["# HELP appliance_model_tokens_month Model API tokens this calendar month, by kind.",
            "# TYPE appliance_model_tokens_month gauge"]
    for scope in ("users", "teams"):
        for r in data[scope]:
            for kind in ("input", "output", "cache_read", "cache_write"):
                out.append(f'appliance_model_tokens_month{{{scope[:-1]}="{label(r["name"])}",kind="{kind}"}} '
                           f'{r[kind + "_tokens"]}')
    out += ["# HELP appliance_budget_month_usd Monthly budgets in force (users and teams that have one).",
            "# TYPE appliance_budget_month_usd gauge"]
    for scope in ("users", "teams"):
        out += [f'appliance_budget_month_usd{{{scope[:-1]}="{label(r["name"])}"}} {r["budget_usd"]}'
                for r in data[scope] if r["budget_usd"]]
    live = [s.id for s in Session.select(Session.id).where(Session.status.not_in(Status.FINAL))]
    out += ["# HELP appliance_session_spend_usd Estimated model API spend of each session not yet finished.",
            "# TYPE appliance_session_spend_usd gauge"]
    out += [f'appliance_session_spend_usd{{session="{label(sid)}"}} {round(spend.cost_usd, 4)}'
            for sid, spend in sorted(meter.session_spend(config, live).items())]
    return out
