from appliance.sessions.hooks import session_start_hooks

SETTINGS = """{"hooks": {"SessionStart": [
  {"matcher": "startup", "hooks": [{"type": "command", "command": "\\"$CLAUDE_PROJECT_DIR\\"/scripts/install_pkgs.sh"}]},
  {"matcher": "resume", "hooks": [{"type": "command", "command": "echo resumed"}]},
  {"hooks": [{"type": "command", "command": "echo always", "timeout": 5}, {"type": "prompt", "prompt": "x"}]}
]}}"""


def test_startup_hooks_in_order():
    hooks = session_start_hooks(SETTINGS)
    assert [h.command for h in hooks] == ['"$CLAUDE_PROJECT_DIR"/scripts/install_pkgs.sh', "echo always"]
    assert hooks[1].timeout == 5


def test_resume_matcher():
    assert [h.command for h in session_start_hooks(SETTINGS, "resume")] == ["echo resumed", "echo always"]


def test_missing_or_broken_settings_mean_no_hooks():
    assert session_start_hooks(None) == [] and session_start_hooks("{not json") == []
    assert session_start_hooks('{"hooks": {"SessionStart": "nonsense"}}') == []
