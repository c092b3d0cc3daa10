"""Model per session and per environment, from the admin's allowed list, shown on the session."""

from __future__ import annotations

import pytest
from test_console_pages import Browser

from appliance.accounts.models import ApiToken, User
from appliance.environments.model_choice import ModelChoice
from appliance.environments.models import Environment
from appliance.environments.service import save_environment
from appliance.errors import Invalid
from appliance.guest_limits import GuestLimits
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.service import NewSession, SessionService
from webui import create_app

from helpers import make_config

ALLOWED = "claude-sonnet-4-5, claude-opus-4-1"


@pytest.fixture
def cfg(tmp_path):  # overrides the shared one: an admin who allows two models
    return make_config(tmp_path / "state", allowed_models=ALLOWED, claude_code_model="claude-haiku-4-5")


@pytest.fixture
def world(db, cfg):
    from werkzeug.security import generate_password_hash

    alice = User.create(username="alice", password_hash=generate_password_hash("correct horse battery"))
    Repository.create(name="acme/api", url="/srv/api.git", credential_kind="token", credential_secret="x")
    return {"alice": alice, "service": SessionService(cfg), "cfg": cfg}


def test_the_choice_comes_from_the_admins_list(cfg):
    models = ModelChoice.from_config(cfg)
    assert models.allowed == ("claude-sonnet-4-5", "claude-opus-4-1")
    assert models.check(" claude-opus-4-1 ") == "claude-opus-4-1" and models.check(None) == ""
    with pytest.raises(Invalid, match="'gpt-9' is not allowed") as e:
        models.check("gpt-9")
    assert "claude-sonnet-4-5, claude-opus-4-1" in e.value.hint
    assert models.for_session("claude-code", "") == "claude-haiku-4-5"  # the configured default
    assert models.for_session("claude-code", "claude-opus-4-1") == "claude-opus-4-1"
    with pytest.raises(Invalid, match="not allowed") as none:
        ModelChoice.from_config(make_config(cfg.state_dir, allowed_models="")).check("claude-opus-4-1")
    assert "allowed_models" in none.value.hint


def test_a_session_takes_its_own_model_else_its_environments(world, cfg):
    alice, service = world["alice"], world["service"]
    limits = GuestLimits.from_config(cfg)
    models = ModelChoice.from_config(cfg)
    env = save_environment(alice, None, {"name": "big", "model": "claude-opus-4-1"}, limits=limits, models=models)
    assert Environment.get_by_id(env.id).model == "claude-opus-4-1"
    with pytest.raises(Invalid, match="the environment's model 'gpt-9' is not allowed"):
        save_environment(alice, env, {"model": "gpt-9"}, limits=limits, models=models)
    assert Environment.get_by_id(env.id).model == "claude-opus-4-1"  # nothing saved
    inherited = service.create(alice, NewSession("acme/api", "do it", environment="big"))
    assert inherited.environment_snapshot["model"] == "claude-opus-4-1"
    own = service.create(alice, NewSession("acme/api", "do it", environment="big", model="claude-sonnet-4-5"))
    assert own.environment_snapshot["model"] == "claude-sonnet-4-5"
    with pytest.raises(Invalid, match="model 'gpt-9' is not allowed"):
        service.create(alice, NewSession("acme/api", "do it", model="gpt-9"))


def test_the_model_is_shown_and_chosen_in_the_console_and_the_api(world, cfg):
    alice = world["alice"]
    app = create_app(Services.build(cfg, world["service"]), test_config={"TESTING": True})
    token = ApiToken.issue(alice)
    api = app.test_client()
    r = api.post("/api/v1/sessions", json={"repository": "acme/api", "prompt": "x", "model": "claude-opus-4-1"},
                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201 and r.json["model"] == "claude-opus-4-1"
    r = api.post("/api/v1/sessions", json={"repository": "acme/api", "prompt": "x", "model": "gpt-9"},
                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and "not allowed" in r.json["error"] and "claude-sonnet-4-5" in r.json["hint"]
    page = Browser(app, "alice")
    form = page.get("/sessions/new").get_data(as_text=True)
    assert '<select name="model" id="model">' in form and "<option >claude-opus-4-1</option>" in form
    r = page.post("/sessions/new", {"repository": "acme/api", "prompt": "Fix it", "agent": "claude-code",
                                    "model": "claude-sonnet-4-5"})
    assert r.status_code == 302
    shown = page.get(r.headers["Location"]).get_data(as_text=True)
    assert '<span id="session-model">model claude-sonnet-4-5</span>' in shown
    assert '<select name="model" id="env-model">' in page.get("/environments/new").get_data(as_text=True)
