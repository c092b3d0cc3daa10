"""The appliance's errors, as the upper layers import them.

They live in `appliance_base.errors` (below netpolicy/ and vmimages/, which raise them too); this
module only re-exports them so `from appliance.errors import …` keeps reading naturally.
"""

from appliance_base.errors import (
    ApplianceError,
    ConfigError,
    Conflict,
    Forbidden,
    HypervisorUnavailable,
    ImageMissing,
    Invalid,
    NotFound,
    NotReady,
    ResourceExhausted,
    SandboxError,
)

__all__ = ["ApplianceError", "ConfigError", "Conflict", "Forbidden", "HypervisorUnavailable", "ImageMissing", "Invalid",
           "NotFound", "NotReady", "ResourceExhausted", "SandboxError"]
