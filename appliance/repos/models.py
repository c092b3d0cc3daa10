from __future__ import annotations

import peewee

from ..accounts.models import Team, User
from ..db import BaseModel, utcnow

FORGES = ("github", "gitlab", "gitea", "local", "none")
CREDENTIAL_KINDS = ("none", "token", "ssh_key")


class Repository(BaseModel):
    name = peewee.CharField(unique=True)  # the short name people type: "acme/api"
    url = peewee.CharField()  # https://…, ssh://…, or a local path (a bare repository on this host)
    default_branch = peewee.CharField(default="main")
    credential_kind = peewee.CharField(default="none")
    credential_username = peewee.CharField(default="")
    # Host-held; never sent to a guest, never shown back once saved (write-only in the console/API).
    credential_secret = peewee.TextField(null=True)
    forge = peewee.CharField(default="none")
    forge_api_url = peewee.CharField(default="")
    forge_project = peewee.CharField(default="")  # owner/name on the forge
    team = peewee.ForeignKeyField(Team, null=True, on_delete="SET NULL")  # None: every user may use it
    created_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = peewee.DateTimeField(default=utcnow)
    # Signs (GitHub, Gitea) or is (GitLab) the forge's webhook deliveries; made on first use
    # (appliance.prloop.hooks.webhook_secret), shown to admins with the webhook URL.
    webhook_secret = peewee.CharField(default="")
    autofix_default = peewee.BooleanField(default=False)  # new sessions' pull requests fix CI and reviews

    def public_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "url": self.url, "default_branch": self.default_branch,
                "forge": self.forge, "forge_project": self.forge_project,
                "credential": self.credential_kind if self.credential_secret else "none"}
