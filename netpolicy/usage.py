"""Model API usage, metered on the host from what the model API answers.

The egress proxy injects the model API key into a guest's requests (proxy_addon.CredentialInjector);
on those same requests it reads the *response* as it streams back to the guest and takes the token
counts the API reports — never a figure the guest sends. `UsageParser` reads one response:

* Anthropic Messages: a JSON `message` with `usage`, or the SSE stream's `message_start` (input and
  cache tokens) and `message_delta` events (cumulative output tokens);
* OpenAI Responses (`response.completed` / `.incomplete` / `.failed` events, or a JSON `response`)
  and Chat Completions (`usage` with `prompt_tokens` / `completion_tokens`, also as the last chunk of
  a stream).

Counts are normalised: `input_tokens` are uncached input, `cache_read_tokens` and
`cache_write_tokens` the cached parts, `output_tokens` the output. One `ModelUsage` row per
response, attributed to the sandbox and session that the client address belongs to.
"""

from __future__ import annotations

import json
import zlib

import peewee

from appliance_base.db import BaseModel, utcnow

JSON_LIMIT = 16 << 20  # a non-streamed JSON body larger than this is not parsed
LINE_LIMIT = 16 << 20  # one SSE line (OpenAI's response.completed carries the whole response)
DONE_EVENTS = ("response.completed", "response.incomplete", "response.failed")
COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


class ModelUsage(BaseModel):
    time = peewee.DateTimeField(default=utcnow, index=True)
    sandbox_id = peewee.CharField(null=True, index=True)
    session_id = peewee.CharField(null=True, index=True)
    host = peewee.CharField()
    model = peewee.CharField(default="")
    input_tokens = peewee.BigIntegerField(default=0)
    output_tokens = peewee.BigIntegerField(default=0)
    cache_read_tokens = peewee.BigIntegerField(default=0)
    cache_write_tokens = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "model_usage"


def _count(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return min(value, 10**12)


class UsageParser:
    """Reads one model API response as it streams past (`feed`, then `finish`). Never raises on
    what it reads: a body it cannot understand simply has no usage."""

    def __init__(self, content_type: str = "", content_encoding: str = ""):
        ct = content_type.lower()
        self.sse = "event-stream" in ct
        self.json = not self.sse and "json" in ct
        encoding = content_encoding.strip().lower()
        self.decoder = None
        self.readable = self.sse or self.json
        self.unknown_encoding = False
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            self.readable = False  # e.g. br: the proxy asks for identity, so this is rare
            self.unknown_encoding = True
        self.buffer = bytearray()
        self.overflow = False
        self.model = ""
        self.counts: dict[str, int] = {}

    def feed(self, chunk: bytes) -> None:
        if not self.readable or not chunk:
            return
        if self.decoder is not None:
            try:
                chunk = self.decoder.decompress(chunk)
            except zlib.error:
                self.readable = False
                return
        if self.json:
            if len(self.buffer) + len(chunk) > JSON_LIMIT:
                self.overflow = True
                self.buffer.clear()
            elif not self.overflow:
                self.buffer += chunk
            return
        self.buffer += chunk
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > LINE_LIMIT:
                    self.buffer.clear()
                    self.overflow = True  # the rest of this line is skipped
                break
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            if self.overflow:
                self.overflow = False
                continue
            self._line(line)

    def finish(self) -> dict | None:
        """The usage this response reported: {model, input_tokens, ...}, or None if it reported none."""
        if self.readable:
            if self.json and not self.overflow:
                self._apply(_loads(bytes(self.buffer)))
            elif self.sse and self.buffer and not self.overflow:
                self._line(bytes(self.buffer))
        self.buffer.clear()
        if not self.counts:
            return None
        return {"model": self.model, **{k: self.counts.get(k, 0) for k in COUNTS}}

    def _line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if line.startswith(b"data:"):
            self._apply(_loads(line[5:].strip()))

    def _apply(self, obj) -> None:
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "message_start":
            self._anthropic(obj.get("message"))
        elif kind == "message_delta":
            self._anthropic({"usage": obj.get("usage")})
        elif kind == "message":
            self._anthropic(obj)
        elif kind in DONE_EVENTS:
            self._openai(obj.get("response"))
        elif obj.get("object") == "response" or isinstance(obj.get("usage"), dict):
            self._openai(obj)

    def _anthropic(self, message) -> None:
        if not isinstance(message, dict):
            return
        self._model(message.get("model"))
        usage = message.get("usage")
        if not isinstance(usage, dict):
            return
        # message_delta's counts are cumulative: a later figure replaces an earlier one
        for ours, theirs in (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
                             ("cache_read_tokens", "cache_read_input_tokens"),
                             ("cache_write_tokens", "cache_creation_input_tokens")):
            n = _count(usage.get(theirs))
            if n is not None:
                self.counts[ours] = n

    def _openai(self, response) -> None:
        if not isinstance(response, dict):
            return
        self._model(response.get("model"))
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return
        if "input_tokens" in usage:  # Responses API
            given, output, details = usage.get("input_tokens"), usage.get("output_tokens"), "input_tokens_details"
        else:  # Chat Completions
            given, output, details = usage.get("prompt_tokens"), usage.get("completion_tokens"), "prompt_tokens_details"
        given, output = _count(given), _count(output)
        if given is None and output is None:
            return
        cached = _count((usage.get(details) or {}).get("cached_tokens") if isinstance(usage.get(details), dict)
                        else None) or 0
        cached = min(cached, given or 0)
        self.counts.update(input_tokens=(given or 0) - cached, output_tokens=output or 0, cache_read_tokens=cached,
                           cache_write_tokens=0)

    def _model(self, model) -> None:
        if isinstance(model, str) and model:
            self.model = model[:200]


def _loads(data: bytes):
    if not data or data == b"[DONE]":
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None
