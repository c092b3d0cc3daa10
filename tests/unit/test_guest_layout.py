"""The guest contract (appliance/sandbox/guest.py): every place in the guest follows the
configured guest user, and no module spells a guest path of its own."""

from __future__ import annotations

from pathlib import Path

from appliance.sandbox.guest import GuestLayout
from appliance.sessions.service import SessionService

from helpers import make_config

ROOT = Path(__file__).resolve().parents[2]


def test_places_follow_the_user():
    g = GuestLayout("dev")
    assert (g.home, g.state_dir, g.env_file, g.hook_env_file) == (
        "/home/dev", "/home/dev/.appliance", "/home/dev/.appliance/env", "/home/dev/.appliance/hook-env")
    assert g.work_dir("acme/api") == "/home/dev/work/api"
    assert g.owns("/home/dev/.claude/x.jsonl")
    assert not g.owns("/home/dev/../root/x") and not g.owns("/home/devx/f") and not g.owns("/etc/passwd")


def test_the_configured_user_reaches_the_runner_and_the_session_layer(tmp_path):
    from appliance.sessions.runner import TurnRunner

    cfg = make_config(tmp_path / "s", guest_user="dev")
    runner = TurnRunner(cfg, sandboxes=None, git_remote=None, mirrors=None, git=None)
    assert runner.layout == GuestLayout("dev") == GuestLayout.from_config(SessionService(cfg).config)


def test_no_module_spells_the_guest_home():
    offenders = [str(p.relative_to(ROOT)) for top in ("appliance", "webui")
                 for p in (ROOT / top).rglob("*.py") if "/home/agent" in p.read_text()]
    assert offenders == []
