"""The model API stand-ins (tests/modelapi.py) that everyone's agent tests script."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from modelapi import AnthropicStandIn, ResponsesStandIn, apply_patch, error, shell, text, tool_use


def post(url: str, body: dict, headers: dict | None = None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers.get("content-type", ""), r.read().decode()


def sse(body: str) -> list[tuple[str, dict]]:
    out = []
    for chunk in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


TOOLS = [{"name": "Read", "input_schema": {"type": "object"}}]


def test_anthropic_streams_text_and_tool_use():
    with AnthropicStandIn([tool_use("Read", {"file_path": "/w/a.txt"}, text="Reading."), text("Done reading.")]) as api:
        status, ctype, body = post(api.base_url + "/v1/messages?beta=true",
                                   {"model": "m", "stream": True, "tools": TOOLS,
                                    "messages": [{"role": "user", "content": "go"}, {"role": "system", "content": "sys"}]},
                                   {"x-api-key": "placeholder", "anthropic-version": "2023-06-01"})
        assert status == 200 and ctype.startswith("text/event-stream")
        events = sse(body)
        names = [n for n, _ in events]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        starts = [d["content_block"] for n, d in events if n == "content_block_start"]
        assert [b["type"] for b in starts] == ["text", "tool_use"] and starts[1]["name"] == "Read"
        partial = "".join(d["delta"]["partial_json"] for n, d in events
                          if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        assert json.loads(partial) == {"file_path": "/w/a.txt"}
        assert "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta") == "Reading."
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
        tool_id = starts[1]["id"]

        # the tool's answer comes back; the next step is plain text (non-streaming this time)
        status, ctype, body = post(api.base_url + "/v1/messages", {"model": "m", "tools": TOOLS, "messages": [
            {"role": "user", "content": "go"}, {"role": "system", "content": "sys"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id,
                                          "content": [{"type": "text", "text": "1\thello"}]}]},
            {"role": "system", "content": "a reminder after the user"}]})
        message = json.loads(body)
        assert message["content"] == [{"type": "text", "text": "Done reading."}] and message["stop_reason"] == "end_turn"

        first, second = api.agent_requests
        assert first.api_key == "placeholder" and first.headers["anthropic-version"] == "2023-06-01"
        assert first.last_user_message() == {"role": "user", "content": "go"}
        [result] = second.tool_results()
        assert (result.tool_use_id, result.content, result.is_error) == (tool_id, "1\thello", False)
        assert second.user_texts() == ["go"]  # what the person typed, not tool results
        assert api.remaining == 0


def test_anthropic_side_requests_errors_and_fallback():
    with AnthropicStandIn([error(429, "slow down")], aux_text="A title") as api:
        _, _, body = post(api.url + "/v1/messages", {"model": "haiku", "messages": [{"role": "user", "content": "title?"}]})
        assert json.loads(body)["content"][0]["text"] == "A title" and api.remaining == 1  # no tools: not a step
        with pytest.raises(urllib.error.HTTPError) as e:
            post(api.url + "/v1/messages", {"model": "m", "tools": TOOLS, "messages": []})
        assert e.value.code == 429 and json.loads(e.value.read())["error"]["type"] == "rate_limit_error"
        _, _, body = post(api.url + "/v1/messages", {"model": "m", "tools": TOOLS, "messages": []})
        assert json.loads(body)["content"][0]["text"] == "Done."  # script used up
        _, _, body = post(api.url + "/v1/messages/count_tokens", {"messages": []})
        assert json.loads(body)["input_tokens"] > 0
        with urllib.request.urlopen(urllib.request.Request(api.url + "/", method="HEAD"), timeout=5) as r:
            assert r.status == 200
        assert [r.method for r in api.requests][-1] == "HEAD" and len(api.agent_requests) == 2
    port = api.port  # still known after stop: a dead stand-in
    with pytest.raises(urllib.error.URLError):
        post(f"http://127.0.0.1:{port}/v1/messages", {})


def test_responses_shell_patch_and_text():
    tools = [{"type": "function", "name": "exec_command"}, {"type": "custom", "name": "apply_patch"}]
    with ResponsesStandIn([shell("ls", text="Looking."), apply_patch("*** Begin Patch\n*** End Patch\n"), text("ok")]) as api:
        _, ctype, body = post(api.base_url + "/responses", {"model": "m", "stream": True, "tools": tools, "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "do"}]}]},
            {"authorization": "Bearer placeholder"})
        events = sse(body)
        assert ctype == "text/event-stream" and events[0][0] == "response.created"
        done = events[-1][1]["response"]
        assert events[-1][0] == "response.completed" and done["usage"]["input_tokens"] > 0
        message, call = done["output"]
        assert message["content"][0]["text"] == "Looking."
        assert call["name"] == "exec_command" and json.loads(call["arguments"]) == {"cmd": "ls", "tty": False}

        _, _, body = post(api.base_url + "/responses", {"model": "m", "tools": [{"type": "function", "name": "shell"}],
                                                         "input": [{"type": "function_call_output", "call_id": call["call_id"],
                                                                    "output": "a.txt\n"}]})
        [patch] = sse(body)[-1][1]["response"]["output"]
        assert patch["type"] == "custom_tool_call" and patch["input"].startswith("*** Begin Patch")
        assert api.requests[0].api_key == "placeholder" and api.requests[0].input_texts() == ["do"]
        assert api.requests[1].function_outputs()[0].content == "a.txt\n"

        # other Codex versions offer other shell tools
        api.script(shell("pwd"))
        post(api.base_url + "/responses", {"model": "m", "tools": [{"type": "function", "name": "shell"}], "input": []})
        _, _, body = post(api.base_url + "/responses", {"model": "m", "tools": [{"type": "function", "name": "shell"}], "input": []})
        [call] = sse(body)[-1][1]["response"]["output"]
        assert call["name"] == "shell" and json.loads(call["arguments"])["command"] == ["bash", "-lc", "pwd"]
