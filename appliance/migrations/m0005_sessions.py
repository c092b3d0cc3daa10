"""Accounts, repositories, environments, sessions, turns, events, comments and diffs."""

import peewee

from appliance.db import JSONField, utcnow


def apply(db: peewee.Database) -> None:
    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        username = peewee.CharField(unique=True)
        display_name = peewee.CharField(default="")
        password_hash = peewee.CharField(null=True)
        is_admin = peewee.BooleanField(default=False)
        created_at = peewee.DateTimeField(default=utcnow)

    class Team(Base):
        name = peewee.CharField(unique=True)

    class TeamMember(Base):
        team = peewee.ForeignKeyField(Team, on_delete="CASCADE")
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")

        class Meta:
            indexes = ((("team", "user"), True),)

    class ApiToken(Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        name = peewee.CharField(default="")
        token_hash = peewee.CharField(unique=True)
        created_at = peewee.DateTimeField(default=utcnow)
        last_used_at = peewee.DateTimeField(null=True)
        revoked = peewee.BooleanField(default=False)

    class Repository(Base):
        name = peewee.CharField(unique=True)
        url = peewee.CharField()
        default_branch = peewee.CharField(default="main")
        credential_kind = peewee.CharField(default="none")
        credential_username = peewee.CharField(default="")
        credential_secret = peewee.TextField(null=True)
        forge = peewee.CharField(default="none")
        forge_api_url = peewee.CharField(default="")
        forge_project = peewee.CharField(default="")
        team = peewee.ForeignKeyField(Team, null=True, on_delete="SET NULL")
        created_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
        created_at = peewee.DateTimeField(default=utcnow)

    class Environment(Base):
        owner = peewee.ForeignKeyField(User, on_delete="CASCADE")
        name = peewee.CharField()
        network_level = peewee.CharField(default="limited")
        allowed_domains = peewee.TextField(default="")
        include_defaults = peewee.BooleanField(default=False)
        variables = peewee.TextField(default="")
        setup_script = peewee.TextField(default="")
        profile = peewee.CharField(default="")
        vcpus = peewee.IntegerField(null=True)
        memory_mb = peewee.IntegerField(null=True)
        disk_gb = peewee.IntegerField(null=True)
        is_default = peewee.BooleanField(default=False)
        created_at = peewee.DateTimeField(default=utcnow)
        updated_at = peewee.DateTimeField(default=utcnow)

        class Meta:
            indexes = ((("owner", "name"), True),)

    class Session(Base):
        id = peewee.CharField(primary_key=True)
        owner = peewee.ForeignKeyField(User, on_delete="CASCADE")
        repository = peewee.ForeignKeyField(Repository, on_delete="RESTRICT")
        environment = peewee.ForeignKeyField(Environment, null=True, on_delete="SET NULL")
        environment_snapshot = JSONField(default=dict)
        agent = peewee.CharField(default="claude-code")
        title = peewee.CharField(default="")
        base_branch = peewee.CharField()
        work_branch = peewee.CharField()
        visibility = peewee.CharField(default="private")
        hide_owner = peewee.BooleanField(default=False)
        status = peewee.CharField(default="queued", index=True)
        status_detail = peewee.CharField(default="")
        sandbox_id = peewee.CharField(null=True)
        agent_session_id = peewee.CharField(null=True)
        base_sha = peewee.CharField(null=True)
        head_sha = peewee.CharField(null=True)
        diff_added = peewee.IntegerField(default=0)
        diff_removed = peewee.IntegerField(default=0)
        pr_url = peewee.CharField(null=True)
        error = peewee.TextField(null=True)
        created_at = peewee.DateTimeField(default=utcnow, index=True)
        updated_at = peewee.DateTimeField(default=utcnow)
        finished_at = peewee.DateTimeField(null=True)

        class Meta:
            indexes = ((("repository", "work_branch"), True),)

    class Turn(Base):
        session = peewee.ForeignKeyField(Session, on_delete="CASCADE")
        number = peewee.IntegerField()
        message = peewee.TextField()
        source = peewee.CharField(default="prompt")
        status = peewee.CharField(default="queued")
        commit_sha = peewee.CharField(null=True)
        error = peewee.TextField(null=True)
        timings = JSONField(default=dict)
        created_at = peewee.DateTimeField(default=utcnow)
        started_at = peewee.DateTimeField(null=True)
        finished_at = peewee.DateTimeField(null=True)

        class Meta:
            indexes = ((("session", "number"), True),)

    class Event(Base):
        id = peewee.AutoField()
        session = peewee.ForeignKeyField(Session, on_delete="CASCADE")
        turn = peewee.ForeignKeyField(Turn, null=True, on_delete="CASCADE")
        kind = peewee.CharField()
        data = JSONField(default=dict)
        created_at = peewee.DateTimeField(default=utcnow)

        class Meta:
            indexes = ((("session", "id"), False),)

    class Comment(Base):
        session = peewee.ForeignKeyField(Session, on_delete="CASCADE")
        author = peewee.ForeignKeyField(User, on_delete="CASCADE")
        path = peewee.CharField()
        line = peewee.IntegerField()
        side = peewee.CharField(default="new")
        body = peewee.TextField()
        sent_in = peewee.ForeignKeyField(Turn, null=True, on_delete="SET NULL")
        created_at = peewee.DateTimeField(default=utcnow)

    class DiffFile(Base):
        session = peewee.ForeignKeyField(Session, on_delete="CASCADE")
        turn = peewee.ForeignKeyField(Turn, on_delete="CASCADE")
        path = peewee.CharField()
        old_path = peewee.CharField(null=True)
        change = peewee.CharField()
        added = peewee.IntegerField()
        removed = peewee.IntegerField()
        binary = peewee.BooleanField(default=False)
        patch = peewee.TextField(default="")

    db.create_tables([User, Team, TeamMember, ApiToken, Repository, Environment, Session, Turn, Event, Comment,
                      DiffFile])
