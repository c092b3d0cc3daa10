"""What the pull-request loop keeps: deliveries seen, forge logins of users, a PR's checks and
review comments."""

from __future__ import annotations

import peewee

from ..accounts.models import User
from ..db import BaseModel, utcnow
from ..repos.models import Repository
from ..sessions.models import Session, Turn


class ForgeDelivery(BaseModel):
    """A webhook delivery taken in: the same delivery id again is a replay and changes nothing."""

    forge = peewee.CharField()
    delivery_id = peewee.CharField()
    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    event = peewee.CharField(default="")
    received_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("forge", "delivery_id"), True),)


class ForgeLogin(BaseModel):
    """`login` on forge `forge` (github | gitlab | gitea) is appliance user `user`: set explicitly
    by an admin, never guessed from names or e-mail addresses. Comments by logins not mapped here
    trigger nothing."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="forge_logins")
    forge = peewee.CharField()
    login = peewee.CharField()

    class Meta:
        indexes = ((("forge", "login"), True),)


class PrCheck(BaseModel):
    """One CI check of a session's pull request, as last reported. `turn`: the auto-fix turn its
    latest failure queued (a check failing again after that turn queues another)."""

    session = peewee.ForeignKeyField(Session, on_delete="CASCADE", backref="pr_check_rows")
    name = peewee.CharField()
    state = peewee.CharField()  # passing | failing | pending
    excerpt = peewee.TextField(default="")
    turn = peewee.ForeignKeyField(Turn, null=True, on_delete="SET NULL")
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("session", "name"), True),)


class PrReviewComment(BaseModel):
    """A review comment on a session's pull request. `thread` is what a reply goes to (GitHub: the
    comment id; GitLab: the discussion id; Gitea: the PR's conversation). `ignored` says why it
    triggered nothing ("" when it queued `turn`)."""

    session = peewee.ForeignKeyField(Session, on_delete="CASCADE", backref="pr_review_comments")
    forge_id = peewee.CharField()
    thread = peewee.CharField(default="")
    author_login = peewee.CharField()
    path = peewee.CharField(default="")
    line = peewee.IntegerField(null=True)
    body = peewee.TextField()
    turn = peewee.ForeignKeyField(Turn, null=True, on_delete="SET NULL")
    ignored = peewee.CharField(default="")
    replied_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("session", "forge_id"), True),)


def pr_details(session: Session) -> dict:
    """The pull request's checks and review comments for the session page, newest comments first."""
    checks = list(PrCheck.select().where(PrCheck.session == session.id).order_by(PrCheck.name))
    comments = []
    for c in (PrReviewComment.select().where(PrReviewComment.session == session.id)
              .order_by(PrReviewComment.id.desc()).limit(50)):
        if c.turn_id:
            outcome = f"turn {c.turn.number}" + (", replied" if c.replied_at else "")
        else:
            outcome = c.ignored or "noted"
        where = f"{c.path}:{c.line}" if c.path and c.line else (c.path or "conversation")
        comments.append({"author": c.author_login, "where": where, "body": c.body[:500], "outcome": outcome})
    return {"checks": [{"name": c.name, "state": c.state} for c in checks], "comments": comments}
