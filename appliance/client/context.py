"""The local Claude Code conversation as context for a remote session (`remote --with-context`).

The REST API has no field for a transcript, so the conversation is rendered compactly and put in
front of the prompt: the user's and the assistant's text; each tool call as one line
(`[tool Read: src/auth.py]`, at most TOOL_CALL_CHARS characters); and the plan made in plan mode
(the `plan` input of the `ExitPlanMode` call, up to PLAN_CHARS characters) — "plan locally, execute
remotely" keeps the plan. Tool *results* are left out: they are the local machine's (file contents,
command output), and the remote agent can re-read the code itself. The whole is cut to its most
recent LIMIT characters; the latest plan is kept even when the cut passes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..agents import transcript
from ..agents.claude_code import tool_summary
from ..agents.events import one_line
from ..errors import ApplianceError

LIMIT = 20000  # characters of context sent with the task, most recent kept
PLAN_CHARS = 8000  # of the plan from plan mode
TOOL_CALL_CHARS = 160  # per tool call line
HEADER = ("Context: the conversation I had locally before sending this task (text, the plan, and one line "
          "per tool call; tool results left out):")
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


def _tool_calls(content, workdir: str) -> list[tuple[str, str]]:
    """(kind, text) for each tool call of an assistant message: ('plan', the plan) for ExitPlanMode,
    else ('tool', one bounded line)."""
    calls = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            continue
        name = str(block.get("name") or "tool")
        tool_input = block.get("input") if isinstance(block.get("input"), dict) else {}
        if name == "ExitPlanMode" and isinstance(tool_input.get("plan"), str) and tool_input["plan"].strip():
            plan = tool_input["plan"].strip()
            if len(plan) > PLAN_CHARS:
                plan = plan[:PLAN_CHARS] + "\n[…rest of the plan left out…]"
            calls.append(("plan", plan))
        else:
            calls.append(("tool", one_line(f"[tool {name}: {tool_summary(name, tool_input, workdir)}]",
                                           TOOL_CALL_CHARS)))
    return calls


def render(jsonl: str, limit: int = LIMIT, workdir: str = "") -> str:
    """`user: …` / `assistant: …` entries from a transcript, tool calls as one line each (paths
    relative to `workdir`), the plan in full (bounded); the most recent `limit` characters, and the
    latest plan always."""
    turns: list[str] = []
    plan: str | None = None

    def add(role: str, text: str) -> None:
        if turns and turns[-1].startswith(role + ": ") and role == "assistant":
            turns[-1] += "\n" + text  # Claude Code writes one line per content block
        else:
            turns.append(f"{role}: {text}")

    for line in jsonl.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("type") not in ("user", "assistant") or entry.get("isMeta"):
            continue
        message = entry.get("message") or {}
        role = message.get("role") or entry["type"]
        text = _text(message.get("content")).strip()
        if text and not text.startswith("<command-") and not text.startswith("<local-command"):
            add(role, text)
        if role != "assistant":
            continue  # a user entry's tool results stay local
        for kind, value in _tool_calls(message.get("content"), workdir):
            if kind == "plan":
                plan = f"plan (made in plan mode):\n{value}"
                turns.append(plan)
            else:
                add("assistant", value)
    out = "\n\n".join(turns)
    if len(out) > limit:
        kept = out[-limit:]
        out = "[…earlier conversation left out…]\n" + kept
        if plan is not None and plan not in kept:
            out = plan + "\n\n" + out
    return out


def with_context(prompt: str, jsonl: str, limit: int = LIMIT, workdir: str = "") -> str:
    rendered = render(jsonl, limit, workdir)
    if not rendered:
        return prompt
    return f"{HEADER}\n\n{rendered}\n\n{FOOTER}{prompt}"
