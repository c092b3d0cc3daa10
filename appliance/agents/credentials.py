"""Is the model credential an agent needs configured on the host? Asked before any guest boots.

The guest never holds the key: the egress proxy injects it per host (e.g. `api.anthropic.com` →
`x-api-key`). The store belongs to the egress proxy; this module only asks it, through a callable
`has_credential(host) -> bool`, and turns a "no" into an error that says what to configure.
"""

from __future__ import annotations

import dataclasses
from typing import Callable
from urllib.parse import urlsplit

from ..errors import ConfigError


class MissingCredential(ConfigError):
    """An agent needs a model API credential the appliance does not have."""


@dataclasses.dataclass(frozen=True)
class CredentialNeed:
    host: str
    header: str
    example: str  # what the header's value looks like


# The header each agent's model API authenticates with, for the hint.
_NEEDS = {
    "claude-code": ("x-api-key", "sk-ant-..."),
    "codex": ("authorization", "Bearer sk-..."),
}


def needed(agent: str, base_url: str = "", default_host: str = "") -> CredentialNeed | None:
    """The credential `agent` needs, or None (the `command` agent needs none). A custom base URL
    moves the need to its host."""
    if agent not in _NEEDS:
        return None
    host = (urlsplit(base_url).hostname or "") if base_url else ""
    host = host or default_host or {"claude-code": "api.anthropic.com", "codex": "api.openai.com"}[agent]
    header, example = _NEEDS[agent]
    return CredentialNeed(host=host.lower().rstrip("."), header=header, example=example)


def check(agent: str, has_credential: Callable[[str], bool], *, base_url: str = "",
          where: str = "the credentials file (egress credentials_file)") -> None:
    """Raise MissingCredential unless the egress proxy holds the credential `agent` needs."""
    need = needed(agent, base_url)
    if need is None or has_credential(need.host):
        return
    raise MissingCredential(
        f"the {agent} agent needs a model API credential for {need.host}, and none is configured",
        hint=f'add [{need.host!r}] {need.header} = "{need.example}" to {where} (mode 600), '
             "or choose the command agent",
    )
