"""The local Claude Code conversation as context for a remote session (`remote --with-context`).

The REST API has no field for a transcript, so the conversation's user/assistant text is rendered
compactly and put in front of the prompt. Tool calls and their results are left out: they are the
local machine's, and the remote agent can re-read the code itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..agents import transcript
from ..errors import ApplianceError

HEADER = "Context: the conversation I had locally before sending this task (user and assistant text only):"
FOOTER = "--- end of local context ---\n\nThe task:\n"


def claude_config_dir() -> Path:
    return Path(str(transcript.config_dir(os.path.expanduser("~"), os.environ.get("CLAUDE_CONFIG_DIR", ""))))


def latest_transcript(cwd: str | os.PathLike, config: Path | None = None) -> Path:
    """The most recently written Claude Code transcript for working directory `cwd`."""
    config = config or claude_config_dir()
    folder = config / "projects" / transcript.project_dir_name(os.path.realpath(cwd))
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    if not files:
        raise ApplianceError(f"no Claude Code conversation found for {os.path.realpath(cwd)} (looked in {folder})",
                             hint="run this where you ran 'claude', or leave out --with-context")
    return files[0]


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def render(jsonl: str, limit: int = 20000) -> str:
    """`user: …` / `assistant: …` lines from a transcript; the most recent `limit` characters."""
    turns: list[str] = []
    for line in jsonl.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("type") not in ("user", "assistant") or entry.get("isMeta"):
            continue
        message = entry.get("message") or {}
        text = _text(message.get("content")).strip()
        if not text or text.startswith("<command-") or text.startswith("<local-command"):
            continue
        role = message.get("role") or entry["type"]
        if turns and turns[-1].startswith(role + ": ") and role == "assistant":
            turns[-1] += "\n" + text  # Claude Code writes one line per content block
        else:
            turns.append(f"{role}: {text}")
    out = "\n\n".join(turns)
    if len(out) > limit:
        out = "[…earlier conversation left out…]\n" + out[-limit:]
    return out


def with_context(prompt: str, jsonl: str, limit: int = 20000) -> str:
    rendered = render(jsonl, limit)
    if not rendered:
        return prompt
    return f"{HEADER}\n\n{rendered}\n\n{FOOTER}{prompt}"
