"""What the web app (and anything else in front of people) is given to work with: one typed
object, built by the daemon, and by each test with the parts it wants. Everything that reaches a
guest, the egress layer or the forges goes through these services; `webui/` imports neither the
sandbox layer nor netpolicy.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance_base.config import Config
from netpolicy.credentials import CredentialsFile

from .sessions.service import SessionService


@dataclass(frozen=True)
class Services:
    config: Config
    sessions: SessionService  # sessions, and through them shells, transcripts, pull requests
    credentials: CredentialsFile  # the model API keys the egress proxy injects (admin page)

    @classmethod
    def build(cls, config: Config, sessions: SessionService | None = None) -> Services:
        """Services over `config`; `sessions` defaults to one with no sandbox layer (no guests)."""
        return cls(config=config, sessions=sessions or SessionService(config),
                   credentials=CredentialsFile(config.credentials_file))
