"""Merge requests of the local forge (appliance.forges.models.MergeRequest)."""

import peewee

from appliance.db import utcnow


def apply(db: peewee.Database) -> None:
    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    # Stand-ins for the tables m0005 made, only so the foreign keys name them.
    class User(Base):
        class Meta:
            table_name = "user"

    class Repository(Base):
        class Meta:
            table_name = "repository"

    class MergeRequest(Base):
        repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
        source_branch = peewee.CharField()
        target_branch = peewee.CharField()
        title = peewee.CharField()
        body = peewee.TextField(default="")
        state = peewee.CharField(default="open", index=True)
        author = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
        merged_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
        created_at = peewee.DateTimeField(default=utcnow)
        updated_at = peewee.DateTimeField(default=utcnow)
        merged_at = peewee.DateTimeField(null=True)
        closed_at = peewee.DateTimeField(null=True)
        merge_commit_sha = peewee.CharField(null=True)
        base_sha = peewee.CharField(null=True)
        head_sha = peewee.CharField(null=True)

    db.create_tables([MergeRequest])
    # One open request per source branch: two racing creators cannot both insert one.
    db.execute_sql("CREATE UNIQUE INDEX merge_request_open_source ON merge_request "
                   "(repository_id, source_branch) WHERE state = 'open'")
