"""Stand-ins for the model APIs, scripted per test (import as `from modelapi import ...`).

The appliance's only allowed fakes are for paid remote services; these two speak just enough of
the real wire formats for the real CLIs to run a whole turn against them:

* `AnthropicStandIn`: the Anthropic Messages API (`POST /v1/messages`, SSE when `stream` is true,
  JSON otherwise; `POST /v1/messages/count_tokens`; `HEAD /` and `GET /` answer 200), as used by
  Claude Code with `ANTHROPIC_BASE_URL`.
* `ResponsesStandIn`: the OpenAI Responses API (`POST /v1/responses`, SSE, Bearer auth), as used
  by `codex exec` with a custom model provider.

A test scripts the agent's side of the conversation as a list of steps: each agent request takes
the next step as its reply (`text(...)`, `tool_use(...)` for Anthropic; `text(...)`, `shell(...)`,
`apply_patch(...)`, `function_call(...)` for Responses; `error(status)` for either). When the script is used up the reply is a plain
"Done." text, so a runaway agent ends its turn instead of hanging. Side requests the CLIs make on
their own (Claude Code's title/topic requests carry no `tools`) get `aux_text` and do not use up
a step. Every request is recorded with its headers and body, so a test can assert which key
arrived and what the tools returned.

    with AnthropicStandIn([tool_use("Read", {"file_path": p}), text("ok")]) as api:
        run_claude(env={"ANTHROPIC_BASE_URL": api.base_url, ...})
        assert api.agent_requests[1].tool_results()[0].content.startswith(...)
"""

from __future__ import annotations

import dataclasses
import http.server
import itertools
import json
import threading
from typing import Any, Callable, Iterable

# ---------------------------------------------------------------- steps (shared by both stand-ins)


@dataclasses.dataclass(frozen=True)
class Step:
    """One scripted reply. kind: "text", "tool_use" (Anthropic) or "function_call" (Responses)."""

    kind: str
    text: str = ""
    name: str = ""
    input: dict | None = None
    stop_reason: str = ""  # Anthropic: override the stop reason (e.g. "max_tokens")
    raw: str = ""  # Responses: the freeform input of a custom tool call (apply_patch)
    status: int = 200  # "error" steps: the HTTP status to answer with


def text(message: str) -> Step:
    """A reply that is only text: the agent's turn ends."""
    return Step("text", text=message)


def tool_use(name: str, input: dict, *, text: str = "") -> Step:
    """Anthropic: ask the agent to call tool `name` (e.g. Read, Edit, Bash) with `input`.
    With `text`, a text block comes first (the "I'll read the file" kind of preamble)."""
    return Step("tool_use", text=text, name=name, input=dict(input))


def function_call(name: str, arguments: dict, *, text: str = "") -> Step:
    """Responses API: ask Codex to call function `name` with `arguments`."""
    return Step("function_call", text=text, name=name, input=dict(arguments))


def error(status: int, message: str = "scripted failure") -> Step:
    """Answer the request with an HTTP error in the API's error format (401, 429, 500, ...)."""
    return Step("error", text=message, status=status)


def custom_tool_call(name: str, raw_input: str, *, text: str = "") -> Step:
    """Responses API: call a freeform ("custom") tool such as Codex's apply_patch."""
    return Step("custom_tool_call", text=text, name=name, raw=raw_input)


def apply_patch(patch: str, *, text: str = "") -> Step:
    """Responses API: edit files through Codex's apply_patch tool (`*** Begin Patch` format)."""
    return custom_tool_call("apply_patch", patch, text=text)


# ---------------------------------------------------------------- recorded requests


@dataclasses.dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    content: str  # text blocks joined with "\n"
    is_error: bool


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or the raw text when it was not JSON, or None
    step: Step | None = None  # the scripted step this request was answered with (None: aux/other)

    @property
    def api_key(self) -> str:
        """The credential that arrived: `x-api-key`, else the Bearer token."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else auth

    # -- Anthropic Messages bodies

    @property
    def messages(self) -> list[dict]:
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []

    def last_user_message(self) -> dict | None:
        """The last message with role "user" (Claude Code may also put role "system" entries in
        `messages`, so "the last message" is not necessarily the user's)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m
        return None

    def user_texts(self) -> list[str]:
        """Every text the user sent in this request's conversation, oldest first."""
        out = []
        for m in self.messages:
            if m.get("role") == "user":
                out.extend(_texts(m.get("content")))
        return out

    def tool_results(self) -> list[ToolResult]:
        """The tool_result blocks of the last user message (the answers to the previous step)."""
        m = self.last_user_message()
        content = m.get("content") if m else None
        if not isinstance(content, list):
            return []
        out = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                out.append(ToolResult(str(block.get("tool_use_id", "")), "\n".join(_texts(block.get("content"))),
                                      bool(block.get("is_error"))))
        return out

    # -- Responses bodies

    def function_outputs(self) -> list[ToolResult]:
        """Responses API: the function_call_output items of this request's input."""
        items = self.body.get("input") if isinstance(self.body, dict) else None
        out = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("type") in ("function_call_output", "custom_tool_call_output"):
                output = item.get("output")
                if isinstance(output, dict):  # {"content": ..., "success": ...}
                    output = output.get("content", "")
                out.append(ToolResult(str(item.get("call_id", "")), "\n".join(_texts(output)), False))
        return out

    def input_texts(self) -> list[str]:
        """Responses API: every user-role input text, oldest first."""
        items = self.body.get("input") if isinstance(self.body, dict) else None
        out = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("role") == "user":
                out.extend(_texts(item.get("content")))
        return out


def _texts(content) -> list[str]:
    if isinstance(content, str):
        return [content]
    out = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, str):
            out.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            out.append(block["text"])
    return out


# ---------------------------------------------------------------- the server core


class _StandIn:
    """A threaded HTTP server on 127.0.0.1 (random port) answering from a script."""

    api_name = ""

    def __init__(self, steps: Iterable[Step] = (), *, aux_text: str = "Scripted title",
                 is_agent_request: Callable[[dict], bool] | None = None, host: str = "127.0.0.1",
                 port: int = 0, tls: tuple[str, str] | None = None):
        """`tls=(certfile, keyfile)` serves HTTPS (e.g. as api.anthropic.com behind the egress proxy)."""
        self._lock = threading.Lock()
        self._steps: list[Step] = list(steps)
        self.aux_text = aux_text
        self.requests: list[Recorded] = []
        self._is_agent = is_agent_request or self._default_is_agent
        self._ids = itertools.count(1)
        self._host = host
        self._bind_port = port
        self._tls = tls
        self._server: http.server.ThreadingHTTPServer | None = None
        self._port = 0
        self._thread: threading.Thread | None = None

    # -- scripting

    def script(self, *steps: Step) -> None:
        """Queue more steps (e.g. for the next turn)."""
        with self._lock:
            self._steps.extend(steps)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._steps)

    @property
    def agent_requests(self) -> list[Recorded]:
        """Requests that were answered from the script (or with the fallback after it ran out)."""
        with self._lock:
            return [r for r in self.requests if r.step is not None]

    def _next_step(self) -> Step:
        with self._lock:
            return self._steps.pop(0) if self._steps else text("Done.")

    def _step_for(self, rec: Recorded, body: dict) -> Step:
        """The agent's requests take the script's next step; side requests get `aux_text`."""
        if not self._is_agent(body):
            return text(self.aux_text)
        rec.step = self._next_step()
        return rec.step

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}standin"

    # -- lifecycle

    @property
    def port(self) -> int:
        """The listening port (still known after stop(): a dead stand-in for failure tests)."""
        assert self._port, "not started"
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._host}:{self.port}"

    def start(self):
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self):
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                if not raw:
                    return None
                try:
                    return json.loads(raw)
                except ValueError:
                    return raw.decode("utf-8", "replace")

            def _record(self, body) -> Recorded:
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with standin._lock:
                    standin.requests.append(rec)
                return rec

            def send(self, status: int, body: bytes, ctype: str, extra: dict | None = None):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self._record(None)
                self.send(200, b"", "text/plain")

            def do_GET(self):
                self._record(None)
                self.send(200, b"ok\n", "text/plain")

            def do_POST(self):
                rec = self._record(self._body())
                try:
                    status, body, ctype = standin._answer(rec)
                except Exception as e:  # a bug in the stand-in: say so to the client and the test
                    status, body, ctype = 500, json.dumps({"error": {"type": "api_error", "message": repr(e)}}).encode(), "application/json"
                self.send(status, body, ctype, {"request-id": standin._next_id("req")})

        self._server = http.server.ThreadingHTTPServer((self._host, self._bind_port), Handler)
        self._server.daemon_threads = True
        if self._tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self._tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{self.api_name}-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- to implement

    def _default_is_agent(self, body: dict) -> bool:
        raise NotImplementedError

    def _answer(self, rec: Recorded) -> tuple[int, bytes, str]:
        raise NotImplementedError


def _sse(events: list[tuple[str, dict]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n" for name, data in events).encode()


# ---------------------------------------------------------------- Anthropic Messages API


class AnthropicStandIn(_StandIn):
    """`ANTHROPIC_BASE_URL` = `self.url`. Agent requests (those offering `tools`) take the next step."""

    api_name = "anthropic"

    @property
    def base_url(self) -> str:
        return self.url

    def _default_is_agent(self, body: dict) -> bool:
        return bool(body.get("tools"))

    def _answer(self, rec: Recorded):
        path = rec.path.split("?", 1)[0]
        body = rec.body if isinstance(rec.body, dict) else {}
        if path == "/v1/messages/count_tokens":
            return 200, json.dumps({"input_tokens": _rough_tokens(body)}).encode(), "application/json"
        if path != "/v1/messages":
            return 404, json.dumps({"type": "error", "error": {"type": "not_found_error", "message": f"no route {path}"}}).encode(), "application/json"
        step = self._step_for(rec, body)
        if step.kind == "error":
            kind = _ANTHROPIC_ERRORS.get(step.status, "api_error")
            return step.status, json.dumps({"type": "error", "error": {"type": kind, "message": step.text}}).encode(), "application/json"
        model = str(body.get("model") or "claude-standin")
        blocks = self._blocks(step)
        stop = step.stop_reason or ("tool_use" if step.kind == "tool_use" else "end_turn")
        usage = {"input_tokens": _rough_tokens(body), "output_tokens": 0,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        out_tokens = max(1, sum(len(json.dumps(b)) for b in blocks) // 4)
        msg_id = self._next_id("msg")
        if not body.get("stream"):
            message = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": blocks,
                       "stop_reason": stop, "stop_sequence": None, "usage": {**usage, "output_tokens": out_tokens}}
            return 200, json.dumps(message).encode(), "application/json"
        events: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}})]
        events.append(("ping", {"type": "ping"}))
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {"type": "text", "text": ""}}))
                for chunk in _chunks(block["text"], 40):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                           "delta": {"type": "text_delta", "text": chunk}}))
            else:
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
                for chunk in _chunks(json.dumps(block["input"]), 60):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                           "delta": {"type": "input_json_delta", "partial_json": chunk}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": {"output_tokens": out_tokens}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return 200, _sse(events), "text/event-stream; charset=utf-8"

    def _blocks(self, step: Step) -> list[dict]:
        blocks = []
        if step.text:
            blocks.append({"type": "text", "text": step.text})
        if step.kind == "tool_use":
            blocks.append({"type": "tool_use", "id": self._next_id("toolu"), "name": step.name, "input": step.input or {}})
        if not blocks:
            blocks.append({"type": "text", "text": ""})
        return blocks


_ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                     404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def _chunks(s: str, n: int) -> list[str]:
    return [s[i:i + n] for i in range(0, len(s), n)] or [""]


def _rough_tokens(body) -> int:
    return max(1, len(json.dumps(body)) // 4)


# ---------------------------------------------------------------- OpenAI Responses API


def shell(command: str, *, workdir: str = "", text: str = "") -> Step:
    """Responses API: ask Codex to run `command` through whichever shell tool the request offers
    (`exec_command` in codex 0.1xx; `shell_command` / `shell` in other versions and models)."""
    args: dict[str, Any] = {"command": command}
    if workdir:
        args["workdir"] = workdir
    return function_call(SHELL, args, text=text)


SHELL = "<shell>"  # placeholder name resolved against the request's tools


def _resolve_shell(args: dict, tools: list) -> tuple[str, dict]:
    names = {t.get("name") for t in tools if isinstance(t, dict)}
    command = args["command"]
    rest = {k: v for k, v in args.items() if k != "command"}
    if "exec_command" in names:
        return "exec_command", {"cmd": command, "tty": False, **rest}
    if "shell_command" in names:
        return "shell_command", {"command": command, **rest}
    return "shell", {"command": ["bash", "-lc", command], **rest}


class ResponsesStandIn(_StandIn):
    """For Codex: its provider's base_url = `self.base_url` (ends in /v1). Every request takes the
    next step; `shell()` steps become whichever shell tool the request offers.

    Script Codex with a model it offers plain function tools to (e.g. `-m gpt-5.5` with codex
    0.169): its default model gets a JavaScript "code mode" tool wrapping all others instead
    (tools listed in an `additional_tools` input item), which these steps do not speak."""

    api_name = "responses"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _default_is_agent(self, body: dict) -> bool:
        return True  # codex exec makes no side requests

    def _answer(self, rec: Recorded):
        path = rec.path.split("?", 1)[0]
        body = rec.body if isinstance(rec.body, dict) else {}
        if path != "/v1/responses":
            return 404, json.dumps({"error": {"type": "not_found", "message": f"no route {path}"}}).encode(), "application/json"
        step = self._step_for(rec, body)
        if step.kind == "error":
            return step.status, json.dumps({"error": {"message": step.text, "type": "standin_error", "code": str(step.status)}}).encode(), "application/json"
        resp_id = self._next_id("resp")
        model = str(body.get("model") or "standin")
        items = []
        if step.text:
            items.append({"type": "message", "role": "assistant", "id": self._next_id("msg"), "status": "completed",
                          "content": [{"type": "output_text", "text": step.text, "annotations": []}]})
        if step.kind == "function_call":
            name, args = step.name, step.input or {}
            if name == SHELL:
                name, args = _resolve_shell(args, body.get("tools") or [])
            items.append({"type": "function_call", "id": self._next_id("fc"), "call_id": self._next_id("call"),
                          "name": name, "arguments": json.dumps(args), "status": "completed"})
        if step.kind == "custom_tool_call":
            items.append({"type": "custom_tool_call", "id": self._next_id("ctc"), "call_id": self._next_id("call"),
                          "name": step.name, "input": step.raw, "status": "completed"})
        in_tokens = _rough_tokens(body)
        usage = {"input_tokens": in_tokens, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": in_tokens + 10}
        base = {"id": resp_id, "object": "response", "model": model, "status": "in_progress", "output": []}
        events: list[tuple[str, dict]] = [("response.created", {"type": "response.created", "response": base})]
        for i, item in enumerate(items):
            if item["type"] == "message":
                events.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": i,
                                                              "item": {**item, "status": "in_progress", "content": []}}))
                events.append(("response.output_text.delta", {"type": "response.output_text.delta", "output_index": i,
                                                              "item_id": item["id"], "content_index": 0, "delta": step.text}))
            elif item["type"] == "function_call":
                events.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": i,
                                                              "item": {**item, "status": "in_progress", "arguments": ""}}))
            else:
                events.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": i,
                                                              "item": {**item, "status": "in_progress", "input": ""}}))
            events.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": i, "item": item}))
        events.append(("response.completed", {"type": "response.completed", "response": {
            **base, "status": "completed", "output": items, "usage": usage}}))
        return 200, _sse(events), "text/event-stream"
