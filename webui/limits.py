"""The appliance's guest size maximums, for the request being served (API and console alike)."""

from __future__ import annotations

from flask import current_app

from appliance.sandbox.limits import GuestLimits
from appliance.sessions.model_choice import ModelChoice


def guest_limits() -> GuestLimits:
    return GuestLimits.from_config(current_app.config["APPLIANCE"])


def model_choice() -> ModelChoice:
    """The models people may pick (the admin's `allowed_models`)."""
    return ModelChoice.from_config(current_app.config["APPLIANCE"])
