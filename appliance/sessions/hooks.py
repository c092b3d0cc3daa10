"""SessionStart hooks from the repository's `.claude/settings.json`, as the reference page
specifies: matcher `startup`, `$CLAUDE_PROJECT_DIR`, `CLAUDE_CODE_REMOTE=true`, and a
`CLAUDE_ENV_FILE` whose `export` lines persist into every later command."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Hook:
    command: str
    timeout: float


def session_start_hooks(settings_text: str | None, source: str = "startup") -> list[Hook]:
    """The command hooks that apply to `source`. A missing or unreadable file means no hooks."""
    if not settings_text:
        return []
    try:
        settings = json.loads(settings_text)
    except ValueError:
        return []
    groups = (settings.get("hooks") or {}).get("SessionStart") or [] if isinstance(settings, dict) else []
    hooks = []
    for group in groups if isinstance(groups, list) else []:
        if not isinstance(group, dict):
            continue
        matcher = str(group.get("matcher", "") or "")
        if matcher not in ("", "*", source) and source not in matcher.split("|"):
            continue
        for hook in group.get("hooks") or []:
            if isinstance(hook, dict) and hook.get("type") == "command" and hook.get("command"):
                hooks.append(Hook(str(hook["command"]), float(hook.get("timeout") or 60)))
    return hooks


def hook_input(session_id: str, cwd: str, source: str = "startup") -> bytes:
    return json.dumps({"session_id": session_id, "hook_event_name": "SessionStart", "source": source,
                       "cwd": cwd}).encode()
