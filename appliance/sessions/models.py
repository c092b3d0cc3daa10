"""Sessions, their turns, their event stream, line comments and diffs."""

from __future__ import annotations

import secrets

import peewee

from ..accounts.models import User
from ..db import BaseModel, JSONField, utcnow
from ..environments.models import Environment
from ..repos.models import Repository


class Status:
    """A session's status; the changes between them are in lifecycle.TRANSITIONS (and only made there)."""

    QUEUED = "queued"
    PROVISIONING = "provisioning"
    SETTING_UP = "setting_up"
    RUNNING = "running"
    IDLE = "idle"  # waiting for input: a follow-up, comments, or the end
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    ACTIVE = (QUEUED, PROVISIONING, SETTING_UP, RUNNING)
    FINAL = (COMPLETED, FAILED, CANCELLED)  # no turn runs or waits; only FAILED takes a follow-up
    ALL = (*ACTIVE, IDLE, *FINAL)


class TurnStatus:
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by its owner (interrupt), or the appliance restarted while it ran
    CANCELLED = "cancelled"

    ALL = (QUEUED, RUNNING, COMPLETED, FAILED, INTERRUPTED, CANCELLED)


VISIBILITIES = ("private", "team", "public")
AGENTS = ("claude-code", "codex", "command")


def new_session_id() -> str:
    return "ses-" + secrets.token_hex(5)


class Session(BaseModel):
    id = peewee.CharField(primary_key=True, default=new_session_id)
    owner = peewee.ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    repository = peewee.ForeignKeyField(Repository, backref="sessions", on_delete="RESTRICT")
    environment = peewee.ForeignKeyField(Environment, null=True, on_delete="SET NULL")
    environment_snapshot = JSONField(default=dict)  # what the session was started with
    agent = peewee.CharField(default="claude-code")
    title = peewee.CharField(default="")
    base_branch = peewee.CharField()
    work_branch = peewee.CharField()
    visibility = peewee.CharField(default="private")
    hide_owner = peewee.BooleanField(default=False)
    status = peewee.CharField(default=Status.QUEUED, index=True)
    status_detail = peewee.CharField(default="")
    sandbox_id = peewee.CharField(null=True)
    agent_session_id = peewee.CharField(null=True)  # the CLI's own id, to resume its conversation
    base_sha = peewee.CharField(null=True)
    head_sha = peewee.CharField(null=True)
    diff_added = peewee.IntegerField(default=0)
    diff_removed = peewee.IntegerField(default=0)
    pr_url = peewee.CharField(null=True)
    # The pull request as the forge last told (events or the poller, appliance.prloop)
    pr_number = peewee.IntegerField(null=True)
    pr_state = peewee.CharField(default="")  # open | merged | closed ("" before one exists)
    pr_checks = peewee.CharField(default="")  # passing | failing | pending ("" none reported)
    autofix = peewee.BooleanField(default=False)  # failed checks and review comments queue turns
    error = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    updated_at = peewee.DateTimeField(default=utcnow)
    finished_at = peewee.DateTimeField(null=True)
    # best-of-N: the sessions started as attempts of one task share a group id (attempts.py)
    group_id = peewee.CharField(null=True, index=True)
    attempt = peewee.IntegerField(null=True)  # 1..N within its group
    archived_at = peewee.DateTimeField(null=True)  # hidden from the default lists; see sessions.removal

    class Meta:
        indexes = ((("repository", "work_branch"), True),)

    def turns_in_order(self) -> list[Turn]:
        return list(Turn.select().where(Turn.session == self).order_by(Turn.number))

    def latest_diff_files(self) -> list[DiffFile]:
        """The files of the newest turn that has a diff (each turn's diff is against the base)."""
        latest = (Turn.select(Turn.id).join(DiffFile, on=(DiffFile.turn == Turn.id))
                  .where(Turn.session == self).order_by(Turn.number.desc()).first())
        if latest is None:
            return []
        return list(DiffFile.select().where(DiffFile.turn == latest.id).order_by(DiffFile.path))


class Turn(BaseModel):
    session = peewee.ForeignKeyField(Session, backref="turns", on_delete="CASCADE")
    number = peewee.IntegerField()
    message = peewee.TextField()
    source = peewee.CharField(default="prompt")  # prompt | follow_up | comments | steer
    status = peewee.CharField(default=TurnStatus.QUEUED)  # TurnStatus
    commit_sha = peewee.CharField(null=True)
    error = peewee.TextField(null=True)
    timings = JSONField(default=dict)  # seconds: queue, boot, clone, setup, agent, push, diff
    job_id = peewee.BigIntegerField(null=True)  # with more than one host: the job leasing it (appliance/cluster)
    created_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("session", "number"), True),)


class Event(BaseModel):
    """One entry of a session's stream; ids only grow, so 'events since N' never misses or repeats."""

    id = peewee.AutoField()
    session = peewee.ForeignKeyField(Session, backref="events", on_delete="CASCADE")
    turn = peewee.ForeignKeyField(Turn, null=True, on_delete="CASCADE")
    kind = peewee.CharField()
    data = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    seq = peewee.IntegerField(null=True)  # 1, 2, ... within the session, in commit order (stream.emit)

    class Meta:
        indexes = ((("session", "id"), False),)

    def to_dict(self) -> dict:
        return {"id": self.id, "turn": self.turn_id and Turn.get_by_id(self.turn_id).number, "kind": self.kind,
                "data": self.data, "at": self.created_at.isoformat() + "Z"}


class Comment(BaseModel):
    session = peewee.ForeignKeyField(Session, backref="comments", on_delete="CASCADE")
    author = peewee.ForeignKeyField(User, on_delete="CASCADE")
    path = peewee.CharField()
    line = peewee.IntegerField()
    side = peewee.CharField(default="new")  # new | old
    body = peewee.TextField()
    # what the comment is about, so a later turn's diff can find the line again (anchors.py):
    # the number of the turn whose diff it was written on, and the line's text there
    turn_number = peewee.IntegerField(null=True)  # None: written before comments kept these
    line_text = peewee.TextField(default="")
    sent_in = peewee.ForeignKeyField(Turn, null=True, on_delete="SET NULL")
    created_at = peewee.DateTimeField(default=utcnow)


class DiffFile(BaseModel):
    """The session branch against its base, per file, as of a turn's end."""

    session = peewee.ForeignKeyField(Session, backref="diff_files", on_delete="CASCADE")
    turn = peewee.ForeignKeyField(Turn, on_delete="CASCADE")
    path = peewee.CharField()
    old_path = peewee.CharField(null=True)
    change = peewee.CharField()  # added | modified | deleted | renamed
    added = peewee.IntegerField()
    removed = peewee.IntegerField()
    binary = peewee.BooleanField(default=False)
    patch = peewee.TextField(default="")
