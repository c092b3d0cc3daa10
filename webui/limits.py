"""The appliance's guest size maximums, for the request being served (API and console alike)."""

from __future__ import annotations

from appliance.environments.model_choice import ModelChoice
from appliance.guest_limits import GuestLimits

from .app import services


def guest_limits() -> GuestLimits:
    return GuestLimits.from_config(services().config)


def model_choice() -> ModelChoice:
    """The models people may pick (the admin's `allowed_models`)."""
    return ModelChoice.from_config(services().config)
