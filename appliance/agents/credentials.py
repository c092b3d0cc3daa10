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


@dataclasses.dataclass(frozen=True)
class ModelApi:
    """An agent's model API: its default host and the header the proxy adds there."""

    host: str
    header: str
    prefix: str  # what precedes the key in the header's value
    example: str  # what a key looks like, for hints


# The one list of model API hosts: agents default to these, the credential check and the
# console's credentials page name them (a configured base URL moves an agent to another host).
MODEL_APIS: dict[str, ModelApi] = {
    "claude-code": ModelApi(host="api.anthropic.com", header="x-api-key", prefix="", example="sk-ant-..."),
    "codex": ModelApi(host="api.openai.com", header="authorization", prefix="Bearer ", example="sk-..."),
}


def needed(agent: str, base_url: str = "", default_host: str = "") -> CredentialNeed | None:
    """The credential `agent` needs, or None (the `command` agent needs none). A custom base URL
    moves the need to its host."""
    api = MODEL_APIS.get(agent)
    if api is None:
        return None
    host = (urlsplit(base_url).hostname or "") if base_url else ""
    host = host or default_host or api.host
    return CredentialNeed(host=host.lower().rstrip("."), header=api.header, example=api.prefix + api.example)


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
