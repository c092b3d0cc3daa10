"""The appliance's guest size maximums, for the request being served (API and console alike)."""

from __future__ import annotations

from appliance.guest_limits import GuestLimits

from .app import services


def guest_limits() -> GuestLimits:
    return GuestLimits.from_config(services().config)
