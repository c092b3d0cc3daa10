"""The largest guest anyone may ask for: config `max_vcpus`, `max_memory_mb`, `max_disk_gb`, each
of which an admin may override on the console's Guest limits page (one row, `GuestLimitOverride`).

Checked where sizes enter (saving an environment) and again where guests are made (the sandbox
manager), so an environment saved before an admin lowered a maximum cannot get past it either.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from .db import BaseModel, utcnow
from .errors import Invalid

FIELDS = ("vcpus", "memory_mb", "disk_gb")


class GuestLimitOverride(BaseModel):
    """The admin's maximums (None: the configuration's); at most one row, id 1."""

    vcpus = peewee.IntegerField(null=True)
    memory_mb = peewee.IntegerField(null=True)
    disk_gb = peewee.IntegerField(null=True)
    updated_at = peewee.DateTimeField(default=utcnow)


@dataclass(frozen=True)
class GuestLimits:
    vcpus: int
    memory_mb: int
    disk_gb: int

    @classmethod
    def from_config(cls, cfg) -> GuestLimits:
        """The configuration's maximums, with the admin's overrides from the database."""
        row = GuestLimitOverride.get_or_none(GuestLimitOverride.id == 1)
        values = {f: getattr(cfg, f"max_{f}") for f in FIELDS}
        if row is not None:
            values.update({f: getattr(row, f) for f in FIELDS if getattr(row, f) is not None})
        return cls(**values)

    @classmethod
    def save_override(cls, cfg, **maximums: int | None) -> GuestLimits:
        """Set the admin's maximums (None: back to the configuration's). Each must be a positive
        whole number and at least the default size, or every session without a size would fail."""
        for field, value in maximums.items():
            if field not in FIELDS:
                raise Invalid(f"unknown limit {field!r}", hint=f"use {', '.join(FIELDS)}")
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise Invalid(f"max_{field} must be a positive whole number, got {value!r}")
            if value < getattr(cfg, field):
                raise Invalid(f"max_{field} {value} is below the default {field} {getattr(cfg, field)}",
                              hint=f"every session without its own size gets {getattr(cfg, field)}: "
                                   "lower the default in the configuration first")
        GuestLimitOverride.insert(id=1, updated_at=utcnow(), **maximums).on_conflict(
            conflict_target=[GuestLimitOverride.id], update={**maximums, "updated_at": utcnow()}).execute()
        return cls.from_config(cfg)

    def check(self, **sizes: int | None) -> None:
        """Raise Invalid naming the first size (vcpus=, memory_mb=, disk_gb=) that is not a
        positive whole number or is over its maximum; None means 'the default' and passes."""
        for field, value in sizes.items():
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise Invalid(f"{field} must be a positive whole number, got {value!r}")
            maximum = getattr(self, field)
            if value > maximum:
                raise Invalid(f"{field} {value} is over this appliance's maximum of {maximum}",
                              hint=f"choose at most {maximum}, or ask an admin to raise max_{field} "
                                   "in the [sandbox] section of the appliance's configuration")
