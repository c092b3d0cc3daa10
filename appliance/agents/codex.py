"""`codex`: the real Codex CLI in its non-interactive mode (`codex exec --json`).

    codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
          -c model_provider=appliance
          -c 'model_providers.appliance={name="appliance",base_url="…/v1",env_key="OPENAI_API_KEY",wire_api="responses"}'
          --disable plugins --disable remote_plugin -c analytics.enabled=false
          [-m MODEL] [resume PREVIOUS] -- PROMPT   </dev/null

A custom provider (rather than the built-in `openai` one) makes Codex take its key from an
environment variable — the placeholder the egress proxy replaces with the real `Authorization:
Bearer …` — and talk only to the base URL (the Responses API, `POST {base}/responses`, SSE).
Codex's own sandbox is bypassed: the guest is the sandbox.

The thread id (the session id) is known only once Codex prints `thread.started`; `codex exec …
resume <id> "…"` continues it. Transcripts: `~/.codex/sessions/YYYY/MM/DD/rollout-…-<id>.jsonl`
(CODEX_HOME is left unset: Codex refuses a CODEX_HOME that does not exist, but creates ~/.codex).
Copying that one file to the same place under another home is enough for `resume` to continue
there (transcript.install_codex).

Codex retries a failed request (even a 401) a few times by default; `provider_options=
{"request_max_retries": 0, "stream_max_retries": 0}` makes a test fail fast.

Output, one JSON object per line: `thread.started`, `turn.started`, `item.started` /
`item.updated` / `item.completed` (items: agent_message, reasoning, command_execution,
file_change, mcp_tool_call, web_search, todo_list, error — an `error` *item* is a warning),
`turn.completed` (usage) or `turn.failed`, and `error` notices (which include "Reconnecting…"
while the model API is unreachable: Codex then waits for the network without end, so the engine's
timeout is what ends such a turn).
"""

from __future__ import annotations

import json
import os
import shlex

from .base import Agent, AgentInvocation, TranscriptRef, TurnParser, TurnSpec, check_prompt, failure_text, loads_object
from .credentials import MODEL_APIS
from .events import Command, Error, Event, Log, Message, Status, ToolResult, ToolUse, TurnResult, one_line, shorten

PROVIDER = "appliance"
DEFAULT_BASE_URL = f"https://{MODEL_APIS['codex'].host}/v1"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


class Codex(Agent):
    name = "codex"
    default_api_host = MODEL_APIS["codex"].host
    key_env = "OPENAI_API_KEY"

    def __init__(self, executable: str = "codex", extra_args: tuple[str, ...] = (),
                 provider_options: dict[str, int | str | bool] | None = None):
        """provider_options: more keys for the provider table, e.g. {"request_max_retries": 0}."""
        self.executable = executable
        self.extra_args = tuple(extra_args)
        self.provider_options = dict(provider_options or {})

    def invocation(self, spec: TurnSpec) -> AgentInvocation:
        check_prompt(spec.prompt)
        key_env = spec.model.api_key_env or self.key_env
        table = {"name": PROVIDER, "base_url": spec.model.base_url or DEFAULT_BASE_URL, "env_key": key_env,
                 "wire_api": "responses", **self.provider_options}
        provider = f"model_providers.{PROVIDER}={{{','.join(f'{k}={_toml_value(v)}' for k, v in table.items())}}}"
        argv = [self.executable, "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                "-c", f"model_provider={PROVIDER}", "-c", provider,
                "--disable", "plugins", "--disable", "remote_plugin", "-c", "analytics.enabled=false",
                *self.extra_args]
        if spec.model.model:
            argv += ["-m", spec.model.model]
        if spec.resume:
            argv += ["resume", spec.resume]
        argv += ["--", spec.prompt]
        env = self.base_env(spec)
        env.update({key_env: spec.model.api_key})  # CODEX_HOME stays unset: Codex creates ~/.codex, not a CODEX_HOME
        env.update(spec.env)
        ref = self.transcript_ref(spec.home_dir, spec.workdir, spec.resume or "")
        return AgentInvocation(argv=tuple(argv), env=env, cwd=spec.workdir, user=spec.user, session_id=spec.resume,
                               transcript=ref, timeout=spec.timeout)

    def transcript_ref(self, home_dir: str, workdir: str, session_id: str) -> TranscriptRef:
        # the rollout's name holds a timestamp only Codex knows: found by pattern after the turn
        return TranscriptRef(agent=self.name, pattern=f"{home_dir}/.codex/sessions/*/*/*/rollout-*-{{session_id}}.jsonl")

    def parser(self, spec: TurnSpec) -> "CodexParser":
        return CodexParser(spec)


class CodexParser(TurnParser):
    def __init__(self, spec: TurnSpec):
        super().__init__(spec)
        self.completed = False
        self.failed = ""
        self.usage: dict | None = None
        self.last_text = ""
        self.last_error = ""

    def _parse(self, line: str) -> list[Event]:
        obj = loads_object(line)
        if obj is None:
            return [Log(text=line)]
        kind = obj.get("type")
        if kind == "thread.started":
            if isinstance(obj.get("thread_id"), str):
                self.session_id = obj["thread_id"]
            return [Status(text=f"Codex started: thread {self.session_id}")]
        if kind == "turn.started":
            return []
        if kind == "turn.completed":
            self.completed = True
            self.usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else None
            return []
        if kind == "turn.failed":
            err = obj.get("error")
            self.failed = str(err.get("message") if isinstance(err, dict) else err or "turn failed")
            if self.failed == self.last_error:
                return []
            self.last_error = self.failed
            return [Error(message=self.failed)]
        if kind == "error":
            self.last_error = str(obj.get("message", ""))
            return [Error(message=self.last_error)]
        if kind in ("item.started", "item.updated", "item.completed"):
            item = obj.get("item")
            if isinstance(item, dict):
                return self._item(kind.split(".")[1], item)
        return [Log(text=one_line(line, 500), level="debug")]

    def _item(self, phase: str, item: dict) -> list[Event]:
        itype, iid = item.get("type"), str(item.get("id", ""))
        if itype == "command_execution":
            command = unwrap_shell(str(item.get("command", "")))
            if phase == "started":
                return [ToolUse(id=iid, name="shell", summary=one_line(command), input={"command": command})]
            if phase == "completed":
                code = item.get("exit_code")
                return [Command(command=command, exit_code=code if isinstance(code, int) else None,
                                output=shorten(str(item.get("aggregated_output") or "")), id=iid)]
            return []
        if itype == "file_change":
            changes = _changes(item.get("changes"), self.spec.workdir)
            if phase == "started":
                return [ToolUse(id=iid, name="apply_patch", summary=one_line(changes))]
            if phase == "completed":
                return [ToolResult(id=iid, ok=item.get("status") == "completed", output=changes, name="apply_patch")]
            return []
        if itype == "mcp_tool_call":
            name = f"{item.get('server', '?')}.{item.get('tool', '?')}"
            if phase == "started":
                args = item.get("arguments")
                return [ToolUse(id=iid, name=name, summary=one_line(json.dumps(args, ensure_ascii=False)) if args else "")]
            if phase == "completed":
                err = item.get("error")
                out = err.get("message") if isinstance(err, dict) else json.dumps(item.get("result"), ensure_ascii=False)
                return [ToolResult(id=iid, ok=item.get("status") == "completed", output=shorten(str(out or "")), name=name)]
            return []
        if itype == "web_search":
            if phase == "started":
                return [ToolUse(id=iid, name="web_search", summary=one_line(str(item.get("query", ""))))]
            if phase == "completed":
                return [ToolResult(id=iid, ok=True, output=one_line(str(item.get("query", ""))), name="web_search")]
            return []
        if phase != "completed":
            return []
        if itype == "agent_message":
            text = str(item.get("text", ""))
            self.last_text = text or self.last_text
            return [Message(text=text)] if text.strip() else []
        if itype == "reasoning":
            text = str(item.get("text", ""))
            return [Log(text=shorten(text), stream="agent", level="debug")] if text.strip() else []
        if itype == "todo_list":
            todos = item.get("items") if isinstance(item.get("items"), list) else []
            lines = [f"[{'x' if t.get('completed') else ' '}] {t.get('text', '')}" for t in todos if isinstance(t, dict)]
            return [Log(text="\n".join(lines), stream="agent")] if lines else []
        if itype == "error":  # a warning, e.g. "Model metadata for `x` not found"
            return [Log(text=str(item.get("message", "")), stream="agent", level="warning")]
        return [Log(text=one_line(json.dumps(item, ensure_ascii=False), 500), stream="agent", level="debug")]

    def finish(self, exit_code: int | None, stderr_tail: str = "") -> TurnResult:
        ok = self.completed and not self.failed and exit_code == 0
        if ok:
            error = ""
        elif self.failed:
            error = self.failed
        else:
            error = failure_text(exit_code, stderr_tail, "codex")
        return TurnResult(ok=ok, session_id=self.session_id, summary=self.last_text, error=error,
                          exit_code=exit_code, usage=self.usage)


def unwrap_shell(command: str) -> str:
    """`cat x` from Codex's `/usr/bin/bash -lc 'cat x'`; anything else unchanged."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    if len(argv) == 3 and os.path.basename(argv[0]) in ("bash", "sh", "zsh", "dash") and argv[1] in ("-c", "-lc"):
        return argv[2]
    return command


def _changes(changes, workdir: str) -> str:
    if not isinstance(changes, list):
        return ""
    prefix = workdir.rstrip("/") + "/"
    out = []
    for c in changes:
        if isinstance(c, dict):
            path = str(c.get("path", "?"))
            out.append(f"{c.get('kind', 'change')} {path[len(prefix):] if path.startswith(prefix) else path}")
    return ", ".join(out)
