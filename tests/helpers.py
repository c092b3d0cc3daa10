"""Helpers shared by every test folder (import as `from helpers import ...`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance_base import config as config_mod

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"


def shared_image_dir() -> Path:
    """Images built once per run by scripts/test (keyed by profile hash), reused by every test."""
    return Path(os.environ.get("APPLIANCE_TEST_IMAGE_DIR", ROOT / "state" / "images"))


def make_config(state_dir: Path, **overrides) -> config_mod.Config:
    """A configuration that reads no file and no environment: only defaults and these overrides."""
    values = {"state_dir": str(state_dir), "image_dir": str(shared_image_dir())}
    values.update({k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()})
    return config_mod.load(env={"APPLIANCE_CONFIG": str(state_dir / "no-such-file.toml")}, overrides=values)


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (run through scripts/test)")


class StandInForge:
    """A stand-in for a forge's REST API (the only kind of stand-in besides the model API): every
    pull request asked for is recorded and answered with `url` (`{session}`-free, numbered)."""

    def __init__(self, url: str = "http://forge.invalid/pr/{number}"):
        self.url = url
        self.requests: list[dict] = []

    def __call__(self, repository, state_dir=None):  # used as SessionService(forge_for=…)
        return self

    def create_pull_request(self, head: str, base: str, title: str, body: str = "", **_):
        from appliance.forges.base import PullRequest

        self.requests.append({"head": head, "base": base, "title": title, "body": body})
        number = len(self.requests)
        return PullRequest(url=self.url.format(number=number, head=head), number=number, state="open")
