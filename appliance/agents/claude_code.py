"""`claude-code`: the real Claude Code CLI, headless, with streaming JSON output.

    claude -p --input-format stream-json --output-format stream-json --verbose
           --dangerously-skip-permissions [--model M] (--session-id NEW | --resume PREVIOUS)
    stdin: {"type": "user", "message": {...PROMPT...}}, then steering messages; closed at `result`

run as the guest's unprivileged user (the CLI refuses --dangerously-skip-permissions as root; the
guest is the sandbox, so it asks for no permissions). Its model API key is a placeholder: the
egress proxy injects the real one. With CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC it contacts
only the base URL (`HEAD /`, `POST /v1/messages?beta=true`).

The first turn picks the session id up front (`--session-id`), so the transcript's path in the
guest is known before the run; later turns `--resume` it (the id stays the same).

Output, one JSON object per line: `system` (subtype `init`, hook and retry notices), `assistant`
(one line per content block), `user` (tool results), and a final `result`, whose `is_error` —
not its `subtype`, which says "success" even for API failures — tells whether the turn worked.
Claude Code runs the repository's SessionStart hooks itself (`.claude/settings.json`, also in -p
mode; their output arrives as `hook_response` lines), with CLAUDE_CODE_REMOTE=true set so hooks
can tell they run in the appliance.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from . import transcript
from .base import Agent, AgentInvocation, TranscriptRef, TurnParser, TurnSpec, check_prompt, failure_text, loads_object
from .credentials import MODEL_APIS
from .events import Error, Event, Log, Message, Status, ToolResult, ToolUse, TurnResult, one_line, shorten


class ClaudeCode(Agent):
    name = "claude-code"
    default_api_host = MODEL_APIS["claude-code"].host
    key_env = "ANTHROPIC_API_KEY"

    def __init__(self, executable: str = "claude", extra_args: tuple[str, ...] = ()):
        self.executable = executable
        self.extra_args = tuple(extra_args)

    def invocation(self, spec: TurnSpec) -> AgentInvocation:
        check_prompt(spec.prompt)
        session_id = transcript.check_session_id(spec.resume or spec.session_id or str(uuid.uuid4()))
        argv = [self.executable, "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
                "--dangerously-skip-permissions", *self.extra_args]
        if spec.model.model:
            argv += ["--model", spec.model.model]
        argv += ["--resume", session_id] if spec.resume else ["--session-id", session_id]
        config = str(transcript.config_dir(spec.home_dir))
        env = self.base_env(spec)
        env.update({
            "CLAUDE_CONFIG_DIR": config,
            spec.model.api_key_env or self.key_env: spec.model.api_key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # only the model API, nothing else
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_REMOTE": "true",  # what hooks check to know they run remotely
        })
        if spec.model.base_url:
            env["ANTHROPIC_BASE_URL"] = spec.model.base_url
        env.update(spec.env)
        ref = self.transcript_ref(spec.home_dir, spec.workdir, session_id)
        return AgentInvocation(argv=tuple(argv), env=env, cwd=spec.workdir, user=spec.user, session_id=session_id,
                               transcript=ref, timeout=spec.timeout, steerable=True,
                               stdin=self.steer_line(spec.prompt))

    def steer_line(self, text: str) -> bytes:
        """A user message in stream-json input: the first one starts the turn; one sent while the
        agent works is shown to the model at its next request ("The user sent a new message while
        you were working: …"), within the same turn."""
        message = {"role": "user", "content": [{"type": "text", "text": text}]}
        return json.dumps({"type": "user", "message": message}).encode() + b"\n"

    def interrupt_line(self) -> bytes:
        """The SDK's interrupt control request: the CLI stops the running tool and ends the turn
        with an `error_during_execution` result."""
        return json.dumps({"type": "control_request", "request_id": f"interrupt-{uuid.uuid4().hex[:8]}",
                           "request": {"subtype": "interrupt"}}).encode() + b"\n"

    def transcript_ref(self, home_dir: str, workdir: str, session_id: str) -> TranscriptRef:
        config = transcript.config_dir(home_dir)
        session_id = transcript.check_session_id(session_id)
        return TranscriptRef(
            agent=self.name,
            path=str(transcript.transcript_path(config, workdir, session_id)),
            extra_dir=str(transcript.session_folder(config, workdir, session_id)),
        )

    def parser(self, spec: TurnSpec) -> "ClaudeCodeParser":
        return ClaudeCodeParser(spec)


class ClaudeCodeParser(TurnParser):
    def __init__(self, spec: TurnSpec):
        super().__init__(spec)
        self.tools: dict[str, str] = {}  # tool_use id -> tool name
        self.result: dict | None = None
        self.last_text = ""
        self.model = ""

    def _parse(self, line: str) -> list[Event]:
        obj = loads_object(line)
        if obj is None:
            return [Log(text=line)]
        if isinstance(obj.get("session_id"), str) and obj["session_id"]:
            self.session_id = obj["session_id"]
        kind = obj.get("type")
        if kind == "system":
            return self._system(obj)
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "user":
            return self._user(obj)
        if kind == "result":
            self.result = obj
            self.turn_over = True
            return []
        if kind in ("stream_event", "control_response"):  # partial messages; the answer to an interrupt
            return []
        return [Log(text=one_line(line, 500), level="debug")]

    def _system(self, obj: dict) -> list[Event]:
        sub = obj.get("subtype")
        if sub == "init":
            self.model = str(obj.get("model") or "")
            version = obj.get("claude_code_version") or ""
            name = f"Claude Code {version}" if version else "Claude Code"
            return [Status(text=f"{name} started: model {self.model or '?'}, session {self.session_id}")]
        if sub == "hook_response":
            name = obj.get("hook_name") or obj.get("hook_event") or "hook"
            outcome = obj.get("outcome") or "done"
            events: list[Event] = [Log(text=f"{name}: {outcome} (exit {obj.get('exit_code')})", stream="hook",
                                       level="info" if outcome == "success" else "warning")]
            for stream in ("stdout", "stderr"):
                out = obj.get(stream)
                if isinstance(out, str) and out.strip():
                    events.append(Log(text=shorten(out.rstrip()), stream="hook"))
            return events
        if sub in ("hook_started", "hook_progress"):
            return []
        if sub == "api_retry":
            status, delay = obj.get("error_status"), _number(obj.get("retry_delay_ms"))
            return [Log(text=f"model API error{f' {status}' if status else ''} ({obj.get('error') or 'unknown'}); "
                             f"retry {obj.get('attempt')}/{obj.get('max_retries')}"
                             f"{f' in {delay / 1000:.1f} s' if delay is not None else ''}",
                        stream="agent", level="warning")]
        if sub == "compact_boundary":
            return [Status(text="Claude Code compacted the conversation")]
        return [Log(text=f"claude: {sub or 'system'} {one_line(json.dumps(obj), 300)}", stream="agent", level="debug")]

    def _assistant(self, obj: dict) -> list[Event]:
        msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        content = msg.get("content") if isinstance(msg.get("content"), list) else []
        synthetic_error = bool(obj.get("error")) or msg.get("model") == "<synthetic>"
        events: list[Event] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str):
                if not block["text"].strip():
                    continue
                if synthetic_error:  # the CLI's own words about a failure, e.g. "API Error: ..."
                    events.append(Error(message=block["text"]))
                else:
                    self.last_text = block["text"]
                    events.append(Message(text=block["text"]))
            elif btype in ("tool_use", "server_tool_use"):
                tid, name = str(block.get("id", "")), str(block.get("name", "?"))
                self.tools[tid] = name
                tool_input = block.get("input") if isinstance(block.get("input"), dict) else {}
                small = tool_input if len(json.dumps(tool_input)) <= 2000 else None
                events.append(ToolUse(id=tid, name=name, summary=tool_summary(name, tool_input, self.spec.workdir), input=small))
            elif btype in ("thinking", "redacted_thinking"):
                continue
        return events

    def _user(self, obj: dict) -> list[Event]:
        msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        content = msg.get("content")
        events: list[Event] = []
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                tid = str(block.get("tool_use_id", ""))
                events.append(ToolResult(id=tid, ok=not block.get("is_error"), output=shorten(_text_of(block.get("content"))),
                                         name=self.tools.get(tid, "")))
        return events

    def finish(self, exit_code: int | None, stderr_tail: str = "") -> TurnResult:
        r = self.result
        if r is None:
            return TurnResult(ok=False, session_id=self.session_id, summary=self.last_text, exit_code=exit_code,
                              error=failure_text(exit_code, stderr_tail, "claude"))
        is_error = bool(r.get("is_error")) or r.get("subtype") != "success"
        ok = not is_error and exit_code == 0
        error = ""
        if is_error:
            error = _result_error(r)
        elif not ok:
            error = failure_text(exit_code, stderr_tail, "claude")
        text = r.get("result") if isinstance(r.get("result"), str) else ""
        return TurnResult(
            ok=ok, session_id=self.session_id, summary=(text or self.last_text) if ok else self.last_text,
            error=error, exit_code=exit_code, cost_usd=_number(r.get("total_cost_usd")),
            usage=r.get("usage") if isinstance(r.get("usage"), dict) else None,
            duration_ms=_int(r.get("duration_ms")), num_turns=_int(r.get("num_turns")),
        )


def _result_error(r: dict) -> str:
    sub = r.get("subtype")
    if sub == "error_max_turns":
        return "Claude Code stopped: it reached its maximum number of turns"
    parts = []
    if isinstance(r.get("result"), str) and r["result"].strip():
        parts.append(r["result"].strip())
    errors = r.get("errors")
    if isinstance(errors, list):
        parts.extend(str(e) for e in errors if e)
    status = r.get("api_error_status")
    text = one_line("; ".join(parts), 500) if parts else f"Claude Code reported an error ({sub or 'no detail'})"
    return f"{text} (model API status {status})" if status and str(status) not in text else text


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    out.append(str(block.get("text", "")))
                else:
                    out.append(f"[{block.get('type', '?')}]")
            elif isinstance(block, str):
                out.append(block)
        return "\n".join(out)
    return "" if content is None else str(content)


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _rel(path: str, workdir: str) -> str:
    if not workdir:  # no checkout to be relative to: the path as given
        return str(path)
    prefix = workdir.rstrip("/") + "/"
    return path[len(prefix):] if isinstance(path, str) and path.startswith(prefix) else str(path)


_SUMMARY_KEYS = {
    "Read": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "Write": "file_path",
    "NotebookEdit": "notebook_path", "NotebookRead": "notebook_path",
    "Bash": "command", "BashOutput": "bash_id", "KillShell": "shell_id",
    "Glob": "pattern", "Grep": "pattern", "LS": "path",
    "WebFetch": "url", "WebSearch": "query",
    "Task": "description", "Agent": "description", "Skill": "skill",
}


def tool_summary(name: str, tool_input: dict, workdir: str = "") -> str:
    """One line saying what a Claude Code tool call does: the file, the command, the pattern."""
    key = _SUMMARY_KEYS.get(name)
    if key and isinstance(tool_input.get(key), str):
        value = tool_input[key]
        if key in ("file_path", "notebook_path", "path"):
            value = _rel(value, workdir)
        if name == "Grep" and isinstance(tool_input.get("path"), str):
            value = f"{value} in {_rel(tool_input['path'], workdir)}"
        return one_line(value)
    if name == "TodoWrite" and isinstance(tool_input.get("todos"), list):
        return f"{len(tool_input['todos'])} to-do items"
    return one_line(json.dumps(tool_input, ensure_ascii=False, sort_keys=True)) if tool_input else ""
