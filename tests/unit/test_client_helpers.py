"""Pure parts of the client: URL matching, the stored login, the context rendering."""

from __future__ import annotations

import json
import stat

import pytest

from appliance.client import context
from appliance.client.git import match_repository, normalize_url
from appliance.client.store import Login, load_login, normalize_server, save_login
from appliance.errors import ApplianceError


@pytest.mark.parametrize("a,b", [
    ("git@github.com:acme/api.git", "https://github.com/acme/api"),
    ("ssh://git@github.com:22/acme/api.git", "https://user@GitHub.com/acme/api/"),
    ("/srv/git/api.git", "file:///srv/git/api.git"),
])
def test_same_repository_in_different_spellings(a, b):
    assert normalize_url(a) == normalize_url(b)


def test_a_fork_is_another_repository():
    assert normalize_url("git@github.com:someone/api.git") != normalize_url("https://github.com/acme/api")


def test_match_repository_by_url_then_by_name():
    repos = [{"name": "acme/api", "url": "https://github.com/acme/api.git"},
             {"name": "acme/web", "url": "/srv/web.git", "forge_project": ""}]
    assert match_repository("git@github.com:acme/api.git", repos)["name"] == "acme/api"
    assert match_repository("https://mirror.example/acme/web.git", repos)["name"] == "acme/web"
    assert match_repository("https://github.com/other/thing", repos) is None


def test_login_file_is_0600_and_round_trips(tmp_path, monkeypatch):
    path = tmp_path / "cfg" / "client.json"
    monkeypatch.setenv("APPLIANCE_CLIENT_CONFIG", str(path))
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)
    save_login(Login("http://h:8080", "apl_x"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_login() == Login("http://h:8080", "apl_x")
    path.write_text(json.dumps({"server": "http://h"}))
    with pytest.raises(ApplianceError, match="incomplete"):
        load_login()


def test_normalize_server():
    assert normalize_server("appliance.local:8080/") == "http://appliance.local:8080"
    with pytest.raises(ApplianceError):
        normalize_server("ftp://x")


def test_context_keeps_user_and_assistant_text_only():
    lines = [
        {"type": "summary", "summary": "x"},
        {"type": "user", "message": {"role": "user", "content": "Where is the bug?"}},
        {"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": "In auth.py."}]}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "tool_use", "name": "Bash", "input": {"command": "cat ~/.ssh/id_rsa"}}]}},
        {"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "content": "SECRET"}]}},
        {"type": "user", "isMeta": True, "message": {"role": "user", "content": "meta"}},
    ]
    text = context.render("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    assert text == "user: Where is the bug?\n\nassistant: In auth.py."
    out = context.with_context("Fix it", "\n".join(json.dumps(x) for x in lines))
    assert out.startswith(context.HEADER) and out.endswith("The task:\nFix it")
    assert context.with_context("Fix it", "") == "Fix it"
    long = json.dumps({"type": "user", "message": {"role": "user", "content": "x" * 500}})
    assert len(context.render(long, limit=100)) < 150
