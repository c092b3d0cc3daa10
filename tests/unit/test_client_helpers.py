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
    assert text == "user: Where is the bug?\n\nassistant: In auth.py.\n[tool Bash: cat ~/.ssh/id_rsa]"
    assert "SECRET" not in text  # tool results stay local
    out = context.with_context("Fix it", "\n".join(json.dumps(x) for x in lines))
    assert out.startswith(context.HEADER) and out.endswith("The task:\nFix it")
    assert context.with_context("Fix it", "") == "Fix it"
    long = json.dumps({"type": "user", "message": {"role": "user", "content": "x" * 500}})
    assert len(context.render(long, limit=100)) < 150


def _entry(role: str, content) -> str:
    return json.dumps({"type": role, "message": {"role": role, "content": content}})


def test_context_keeps_the_plan_from_plan_mode_and_bounded_tool_calls():
    plan = "1. Read auth.py\n2. Fix the token check\n3. Add a test"
    lines = [
        _entry("user", "Plan how to fix the login bug"),
        _entry("assistant", [{"type": "tool_use", "id": "a", "name": "Read", "input": {"file_path": "auth.py"}}]),
        _entry("user", [{"type": "tool_result", "tool_use_id": "a", "content": "def check(): SECRET"}]),
        _entry("assistant", [{"type": "tool_use", "id": "b", "name": "Bash", "input": {"command": "x" * 5000}}]),
        _entry("assistant", [{"type": "tool_use", "id": "c", "name": "ExitPlanMode", "input": {"plan": plan}}]),
    ]
    text = context.render("\n".join(lines))
    assert "assistant: [tool Read: auth.py]" in text and "SECRET" not in text
    bash = next(line for line in text.splitlines() if line.startswith("[tool Bash"))
    assert len(bash) <= context.TOOL_CALL_CHARS
    assert text.endswith(f"plan (made in plan mode):\n{plan}")
    # a long conversation after the plan: the cut keeps the most recent text and still the plan
    later = [_entry("user", f"question {i} " + "y" * 300) for i in range(200)]
    long = context.render("\n".join(lines + later))
    assert long.startswith(f"plan (made in plan mode):\n{plan}")
    assert len(long) <= context.LIMIT + len(plan) + 100
    huge = context.render(_entry("assistant", [{"type": "tool_use", "name": "ExitPlanMode",
                                                  "input": {"plan": "p" * 50000}}]))
    assert len(huge) < context.PLAN_CHARS + 200 and huge.endswith("[…rest of the plan left out…]")


def test_remote_help_states_the_context_bounds(capsys):
    from appliance.cli.main import main

    with pytest.raises(SystemExit):
        main(["remote", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"up to {context.PLAN_CHARS} characters" in out and f"latest {context.LIMIT} characters" in out
    assert f"up to {context.TOOL_CALL_CHARS} characters each" in out


def test_context_tool_paths_are_relative_to_the_checkout():
    line = _entry("assistant", [{"type": "tool_use", "name": "Edit", "input": {"file_path": "/home/me/proj/src/a.py"}}])
    assert context.render(line, workdir="/home/me/proj") == "assistant: [tool Edit: src/a.py]"
    assert context.render(line) == "assistant: [tool Edit: /home/me/proj/src/a.py]"


def test_the_cli_diff_names_each_file_like_git_does():
    from appliance.cli.remote_cmd import patch_header

    assert patch_header({"path": "a.py", "old_path": None, "change": "modified"}) == \
        "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n"
    assert patch_header({"path": "new.txt", "old_path": "", "change": "added"}).splitlines()[1] == "--- /dev/null"
    assert patch_header({"path": "gone.txt", "old_path": "", "change": "deleted"}).splitlines()[2] == "+++ /dev/null"
    assert patch_header({"path": "b.py", "old_path": "a.py", "change": "renamed"}).startswith("diff --git a/a.py b/b.py\n")
