"""Who may use and change an environment. Its owner does everything; when the owner shares it with
a team, that team's members may start sessions with it (and read it), but only the owner edits or
deletes it. An environment a user may not use does not exist for them (404)."""

from __future__ import annotations

import peewee

from ..accounts.models import Team, TeamMember, User
from ..errors import Forbidden, Invalid, NotFound
from .models import Environment


def usable(user: User) -> peewee.ModelSelect:
    """The user's own environments and those shared with a team of theirs."""
    my_teams = TeamMember.select(TeamMember.team).where(TeamMember.user == user)
    return Environment.select().where((Environment.owner == user) | Environment.team.in_(my_teams))


def usable_one(user: User, env_id: int) -> Environment:
    env = usable(user).where(Environment.id == env_id).first()
    if env is None:
        raise NotFound(f"no environment {env_id}", hint="see 'appliance env list'")
    return env


def owned(user: User, env_id: int) -> Environment:
    """The environment when `user` owns it; Forbidden when it is only shared with them."""
    env = usable_one(user, env_id)
    if env.owner_id != user.id:
        raise Forbidden(f"environment {env.name!r} is shared with you by {env.owner.username}: only they change it",
                        hint="make a copy of your own ('Add environment') to change it")
    return env


def team_to_share_with(owner: User, name: str | None) -> Team | None:
    """The team named `name` (None/"" : not shared); the owner must be one of its members."""
    name = (name or "").strip()
    if not name:
        return None
    team = Team.get_or_none(Team.name == name)
    if team is None or not (owner.is_admin or TeamMember.select().where(
            (TeamMember.team == team) & (TeamMember.user == owner)).exists()):
        raise Invalid(f"'team': you are not a member of a team {name!r}",
                      hint="share with one of your teams, or leave it empty to keep the environment to yourself")
    return team
