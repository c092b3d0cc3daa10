"""The model credential check that runs before any guest boots."""

from __future__ import annotations

import pytest

from appliance.agents import credentials
from appliance.errors import ApplianceError


def test_claude_code_needs_the_anthropic_key():
    asked = []
    credentials.check("claude-code", lambda host: asked.append(host) or True)
    assert asked == ["api.anthropic.com"]
    with pytest.raises(credentials.MissingCredential) as e:
        credentials.check("claude-code", lambda host: False, where="/etc/appliance/credentials.toml")
    assert isinstance(e.value, ApplianceError)
    assert "api.anthropic.com" in e.value.message and "claude-code" in e.value.message
    assert "x-api-key" in e.value.hint and "/etc/appliance/credentials.toml" in e.value.hint


def test_codex_needs_an_openai_bearer_token():
    with pytest.raises(credentials.MissingCredential) as e:
        credentials.check("codex", lambda host: host != "api.openai.com")
    assert "authorization" in e.value.hint and "Bearer" in e.value.hint


def test_a_custom_base_url_moves_the_need_to_its_host():
    need = credentials.needed("claude-code", "https://LLM-Gateway.corp.example:8443/anthropic")
    assert need and need.host == "llm-gateway.corp.example"
    credentials.check("claude-code", lambda host: host == "llm-gateway.corp.example",
                      base_url="https://llm-gateway.corp.example/anthropic")


def test_the_command_agent_needs_nothing():
    assert credentials.needed("command") is None
    credentials.check("command", lambda host: pytest.fail("must not ask"))
