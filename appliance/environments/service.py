"""Saving environments: every field checked before anything is written."""

from __future__ import annotations

from ..accounts.models import User
from ..db import database, utcnow
from ..errors import Invalid
from ..guest_limits import FIELDS as SIZE_FIELDS
from ..guest_limits import GuestLimits
from . import dotenv
from .access import team_to_share_with
from .model_choice import ModelChoice
from .models import NETWORK_LEVELS, Environment


def save_environment(owner: User, env: Environment | None, data: dict, *, limits: GuestLimits,
                     models: ModelChoice | None = None) -> Environment:
    """Create (`env` None) or update an environment from `data`; guest sizes must be within `limits`,
    a model among the admin's (`models`; None: no choice)."""
    from netpolicy.allowlist import Policy

    fields: dict = {}
    if env is None or "name" in data:
        name = str(data.get("name", "")).strip()
        if not name or len(name) > 64:
            raise Invalid("an environment needs a name of 1 to 64 characters")
        clash = Environment.select().where((Environment.owner == owner) & (Environment.name == name))
        if env is not None:
            clash = clash.where(Environment.id != env.id)
        if clash.exists():
            raise Invalid(f"you already have an environment named {name!r}")
        fields["name"] = name
    level = data.get("network_level", env.network_level if env else "limited")
    if level not in NETWORK_LEVELS:
        raise Invalid(f"unknown network level {level!r}", hint=f"use one of: {', '.join(NETWORK_LEVELS)}")
    domains = data.get("domains", env.domains if env else [])
    if isinstance(domains, str):
        domains = [d for d in domains.splitlines() if d.strip()]
    include_defaults = bool(data.get("include_defaults", env.include_defaults if env else False))
    # validates every pattern (wildcards only as a leading '*.'), and that domains go with 'custom'
    Policy.make(level, domains if level == "custom" else [], include_defaults)
    fields.update(network_level=level, allowed_domains="\n".join(d.strip() for d in domains),
                  include_defaults=include_defaults)
    if "variables" in data:
        dotenv.parse(str(data["variables"]))  # raises with the line numbers; nothing saved
        fields["variables"] = str(data["variables"])
    for key in ("setup_script", "profile"):
        if key in data:
            fields[key] = str(data[key] or "")
    if "model" in data:
        fields["model"] = (models or ModelChoice((), {})).check(str(data["model"] or ""), "the environment's model")
    if "team" in data:  # shared with one team of the owner's (its members may use it), or with nobody
        team = team_to_share_with(owner, data["team"])
        fields["team"] = team.id if team else None
    sizes = {key: data[key] for key in SIZE_FIELDS if key in data}
    limits.check(**sizes)
    fields.update(sizes)
    with database.atomic():
        if data.get("is_default"):
            Environment.update(is_default=False).where(Environment.owner == owner).execute()
            fields["is_default"] = True
        elif env is None and not Environment.select().where(Environment.owner == owner).exists():
            fields["is_default"] = True  # a user's first environment is their default
        if env is None:
            env = Environment.create(owner=owner, **fields)
        else:
            fields["updated_at"] = utcnow()
            Environment.update(**fields).where(Environment.id == env.id).execute()
            env = Environment.get_by_id(env.id)
    return env
