"""Merge requests of the `local` forge (repositories hosted by the appliance itself)."""

from __future__ import annotations

import peewee

from ..accounts.models import User
from ..db import BaseModel, utcnow
from ..repos.models import Repository


class MergeRequest(BaseModel):
    """A proposal to merge `source_branch` into `target_branch` of a hosted bare repository.

    At most one *open* request per (repository, source branch): a partial unique index enforces it.
    When merged, `base_sha` (the merge base) and `head_sha` (the source commit merged) keep the diff
    showable after the branches move on or are deleted.
    """

    repository = peewee.ForeignKeyField(Repository, backref="merge_requests", on_delete="CASCADE")
    source_branch = peewee.CharField()
    target_branch = peewee.CharField()
    title = peewee.CharField()
    body = peewee.TextField(default="")
    state = peewee.CharField(default="open", index=True)  # open | merged | closed
    author = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="merge_requests")
    merged_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    merged_at = peewee.DateTimeField(null=True)
    closed_at = peewee.DateTimeField(null=True)
    merge_commit_sha = peewee.CharField(null=True)
    base_sha = peewee.CharField(null=True)
    head_sha = peewee.CharField(null=True)

    @property
    def url(self) -> str:
        return merge_request_url(self.repository.name, self.id)

    def public_dict(self) -> dict:
        return {"id": self.id, "repository": self.repository.name, "url": self.url,
                "source_branch": self.source_branch, "target_branch": self.target_branch,
                "title": self.title, "body": self.body, "state": self.state,
                "author": self.author.username if self.author_id else None,
                "merged_by": self.merged_by.username if self.merged_by_id else None,
                "created_at": self.created_at.isoformat() + "Z" if self.created_at else None,
                "merged_at": self.merged_at.isoformat() + "Z" if self.merged_at else None,
                "closed_at": self.closed_at.isoformat() + "Z" if self.closed_at else None,
                "merge_commit_sha": self.merge_commit_sha}


def merge_request_url(repository_name: str, mr_id: int) -> str:
    """Relative: the console serves it."""
    return f"/repos/{repository_name}/merge_requests/{mr_id}"
