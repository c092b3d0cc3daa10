"""Adding, finding and removing repositories (admins). Credentials are write-only: stored, never
returned."""

from __future__ import annotations

import re

import peewee

from ..accounts.models import Team, User
from ..db import database
from ..errors import Invalid, NotFound
from .models import CREDENTIAL_KINDS, FORGES, Repository

NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def save_repository(user: User | None, data: dict) -> Repository:
    """A new repository from form/JSON fields; `user` is who added it (None: the server's CLI)."""
    name = str(data.get("name", "")).strip()
    url = str(data.get("url", "")).strip()
    if not NAME.match(name):
        raise Invalid(f"{name!r} is not a repository name", hint="letters, digits, . _ - and /, e.g. acme/api")
    if Repository.select().where(Repository.name == name).exists():
        raise Invalid(f"repository {name!r} already exists")
    if not url or not (url.startswith(("https://", "http://", "ssh://", "git@", "/"))):
        raise Invalid(f"{url!r} is not a git remote", hint="https://…, ssh://…, git@host:path or a local path")
    kind = data.get("credential_kind", "none")
    if kind not in CREDENTIAL_KINDS:
        raise Invalid(f"unknown credential kind {kind!r}", hint=f"use one of: {', '.join(CREDENTIAL_KINDS)}")
    if kind != "none" and not data.get("credential_secret"):
        raise Invalid("credential_secret is required with a credential kind")
    forge = data.get("forge", "none")
    if forge not in FORGES:
        raise Invalid(f"unknown forge {forge!r}", hint=f"use one of: {', '.join(FORGES)}")
    team = None
    if data.get("team"):
        team = Team.get_or_none(Team.name == data["team"])
        if team is None:
            raise Invalid(f"unknown team {data['team']!r}")
    return Repository.create(
        name=name, url=url, default_branch=str(data.get("default_branch") or "main"), credential_kind=kind,
        credential_username=str(data.get("credential_username") or ""),
        credential_secret=data.get("credential_secret") or None, forge=forge,
        forge_api_url=str(data.get("forge_api_url") or ""), forge_project=str(data.get("forge_project") or ""),
        team=team, created_by=user,
    )


def get_repository(ref: str | int) -> Repository:
    """A repository by name or id, whoever may use it (for admins)."""
    repo = None
    if isinstance(ref, int) or str(ref).isdigit():
        repo = Repository.get_or_none(Repository.id == int(ref))
    repo = repo or Repository.get_or_none(Repository.name == str(ref))
    if repo is None:
        raise NotFound(f"no repository {ref!r}", hint="see 'appliance repo list'")
    return repo


def delete_repository(repo: Repository) -> None:
    """Remove a repository no session refers to. The database refuses while one does (sessions keep
    their repository for their history); sessions.service.check_repository_unused names them first."""
    try:
        with database.atomic():
            repo.delete_instance()
    except peewee.IntegrityError as e:
        raise Invalid(f"repository {repo.name!r} is used by sessions: it was not removed",
                      hint="see its sessions in the console; a repository is removed only while no session uses it") from e
