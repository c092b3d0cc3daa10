"""Errors the appliance shows to people.

Every error carries a `hint`: one sentence saying what to do about it. The CLI prints
`error: <message>` and `hint: <hint>` and exits non-zero; the web layer maps them to responses.
"""


class ApplianceError(Exception):
    """Base of all errors meant for a person to read."""

    exit_code = 1

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(ApplianceError):
    """The configuration file or an APPLIANCE_* variable is wrong."""


class NotFound(ApplianceError):
    """An object the caller named does not exist (or is not theirs to see)."""

    exit_code = 2


class ImageMissing(NotFound):
    """No built image for the profile asked for."""


class HypervisorUnavailable(ApplianceError):
    """libvirtd cannot be reached or refused an operation."""


class SandboxError(ApplianceError):
    """A sandbox could not be created, reached or destroyed."""


class NotReady(SandboxError):
    """A guest booted (or not) but never answered SSH within the allowed time."""


class ResourceExhausted(ApplianceError):
    """Disk, memory or addresses ran out."""


class Forbidden(ApplianceError):
    """The caller may see the object but not do this to it."""

    exit_code = 3


class Invalid(ApplianceError):
    """The request itself is wrong (bad field, too large, conflicting)."""

    exit_code = 2


class Conflict(Invalid):
    """The request is well formed but the object's state refuses it now (HTTP 409)."""
