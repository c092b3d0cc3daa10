"""Who may see and change what. Anything a caller may not see does not exist for them (404).

Every share, public included, stays inside the repository's audience: a session shows its
repository's code (diff, events, egress log), so nobody who may not use the repository sees it.
"""

from __future__ import annotations

from ..accounts.models import TeamMember, User, team_mates
from ..errors import Forbidden, NotFound
from ..repos.models import Repository
from .models import Session


def may_use_repository(user: User, repo: Repository) -> bool:
    if user.is_admin or repo.team_id is None:
        return True
    return TeamMember.select().where((TeamMember.team == repo.team_id) & (TeamMember.user == user)).exists()


def may_view(user: User | None, session: Session) -> bool:
    if user is None:
        return False
    if user.is_admin or session.owner_id == user.id:
        return True
    if session.visibility not in ("public", "team") or not may_use_repository(user, session.repository):
        return False
    # public: anyone who may use the repository; team: a team mate of the owner among them
    return session.visibility == "public" or session.owner_id in team_mates(user)


def shows_owner(viewer: User | None, session: Session) -> bool:
    """Whether `viewer` may learn who owns `session`: its owner may hide their name from everyone
    but themselves and admins ("Hide my name")."""
    return not session.hide_owner or (viewer is not None and (viewer.is_admin or viewer.id == session.owner_id))


def name_in_session(viewer: User | None, session: Session | None, person: User | None) -> str | None:
    """How `person` (a comment's or merge request's author) is named to `viewer` where `session`
    shows: None when it is the owner who hid their name. Every place that names someone in a
    session asks here, so the owner's choice holds on every page."""
    if person is None:
        return None
    if session is not None and person.id == session.owner_id and not shows_owner(viewer, session):
        return None
    return person.username


def may_change(user: User | None, session: Session) -> bool:
    """Steer, comment, cancel, create PRs: the owner (and admins)."""
    return user is not None and (user.is_admin or session.owner_id == user.id)


def session_for(user: User | None, session_id: str, change: bool = False) -> Session:
    session = Session.get_or_none(Session.id == session_id)
    if session is None or not may_view(user, session):
        raise NotFound(f"no session {session_id}", hint="see 'appliance tasks'")
    if change and not may_change(user, session):
        raise Forbidden("only the session's owner can do that", hint="ask the owner")
    return session


def visible_sessions(user: User):
    """A query of the sessions `user` may see, with each one's owner and repository joined in (lists
    show both: without the join a page of 50 costs 100 more queries)."""
    query = (Session.select(Session, User, Repository)
             .join_from(Session, User, on=Session.owner)
             .join_from(Session, Repository, on=Session.repository))
    if user.is_admin:
        return query
    mates = list(team_mates(user))
    my_teams = TeamMember.select(TeamMember.team).where(TeamMember.user == user)
    usable = Repository.select(Repository.id).where(Repository.team.is_null() | Repository.team.in_(my_teams))
    return query.where(
        (Session.owner == user)
        | (Session.repository.in_(usable)
           & ((Session.visibility == "public") | ((Session.visibility == "team") & Session.owner.in_(mates))))
    )
