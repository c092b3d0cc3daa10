"""A session whose agent has no model API credential is refused before anything is queued — for
the host the guest would really dial (a configured base URL moves it off the default)."""

from __future__ import annotations

import pytest

from appliance.accounts.models import User
from appliance.agents.credentials import MissingCredential
from appliance.db import open_database
from appliance.repos.models import Repository
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sandbox.manager import SandboxManager
from appliance.sessions.engine import Engine
from appliance.sessions.models import Session
from appliance.sessions.service import NewSession

from helpers import make_config


@pytest.fixture
def make_engine(tmp_path):
    cfg = make_config(tmp_path / "state")
    open_database(cfg.database_url)
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    Repository.create(name="acme/app", url="/srv/app.git")
    user = User.create(username="alice")

    def make(held: set[str], **kw) -> tuple[Engine, User]:
        manager = SandboxManager(cfg, Hypervisor(f"test://{node}"), egress=object())
        return Engine(cfg, manager, has_credential=lambda host: host in held, **kw), user

    return make


def test_the_checked_host_follows_the_configured_base_url(make_engine):
    engine, user = make_engine({"api.anthropic.com"},
                               model_base_urls={"claude-code": "https://llm.internal.example/v1"})
    with pytest.raises(MissingCredential, match="llm.internal.example"):
        engine.service.create(user, NewSession("acme/app", "Fix it", agent="claude-code"))
    assert Session.select().count() == 0

    engine, user = make_engine({"llm.internal.example"},
                               model_base_urls={"claude-code": "https://llm.internal.example/v1"})
    assert engine.service.create(user, NewSession("acme/app", "Fix it", agent="claude-code")).id


def test_the_default_host_without_a_base_url(make_engine):
    engine, user = make_engine(set())
    with pytest.raises(MissingCredential, match="api.openai.com"):
        engine.service.create(user, NewSession("acme/app", "Fix it", agent="codex"))
    engine, user = make_engine({"api.openai.com"})
    assert engine.service.create(user, NewSession("acme/app", "Fix it", agent="codex")).id
