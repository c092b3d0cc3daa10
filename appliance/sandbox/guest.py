"""The guest contract: where things are inside a sandbox's guest, in one place.

The image creates the guest user (`guest_user` of its profile, `agent` by default) and the
identity service creates `config.guest_user` on first boot when the image has another one, so the
configured name is the truth: the SSH login, the agent's HOME, the engine's files and the checkout
all follow from it. Runner, transcripts and agents ask this module instead of spelling paths.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class GuestLayout:
    user: str

    @property
    def home(self) -> str:
        return f"/home/{self.user}"

    @property
    def state_dir(self) -> str:
        """The engine's own files in the guest (session variables, hook exports)."""
        return f"{self.home}/.appliance"

    @property
    def env_file(self) -> str:
        """The environment's .env variables, sourced before setup, hooks and the agent."""
        return f"{self.state_dir}/env"

    @property
    def hook_env_file(self) -> str:
        """What SessionStart hooks export (`CLAUDE_ENV_FILE`), carried into the agent's environment."""
        return f"{self.state_dir}/hook-env"

    @property
    def git_credentials(self) -> str:
        """The session's git token for git's credential-store helper (never in the remote URL)."""
        return f"{self.state_dir}/git-credentials"

    def work_dir(self, repository_name: str) -> str:
        """The checkout of `repository_name` (its last path part under ~/work)."""
        return posixpath.join(self.home, "work", repository_name.rsplit("/", 1)[-1])

    def owns(self, path: str) -> bool:
        """Whether `path` (a name the guest reported) is a plain file path under the user's home."""
        return path.startswith(self.home + "/") and "/../" not in path and "\n" not in path

    @classmethod
    def from_config(cls, config) -> GuestLayout:
        return cls(config.guest_user)
