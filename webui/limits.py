"""The appliance's guest size maximums, for the request being served (API and console alike)."""

from __future__ import annotations

from flask import current_app

from appliance.guest_limits import GuestLimits


def guest_limits() -> GuestLimits:
    return GuestLimits.from_config(current_app.config["APPLIANCE"])
