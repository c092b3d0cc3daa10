"""Reading token usage from model API responses as they stream past (netpolicy/usage.py)."""

import gzip
import json

import pytest

from netpolicy.usage import UsageParser


def sse(*events) -> bytes:
    return b"".join(f"event: {e.get('type', 'x')}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


ANTHROPIC_STREAM = sse(
    {"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {
        "input_tokens": 1200, "output_tokens": 1, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 5000}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "usage: {\"input_tokens\": 9}"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}},
    {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 420}},  # cumulative: the last one counts
    {"type": "message_stop"},
)
ANTHROPIC_JSON = {"id": "msg_2", "type": "message", "model": "claude-opus-4-1", "content": [],
                  "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 30}}
OPENAI_RESPONSES_STREAM = sse(
    {"type": "response.created", "response": {"model": "gpt-5-codex", "usage": None}},
    {"type": "response.output_text.delta", "delta": "hi"},
    {"type": "response.completed", "response": {"model": "gpt-5-codex", "output": [{"x": "y" * 5000}], "usage": {
        "input_tokens": 900, "input_tokens_details": {"cached_tokens": 400}, "output_tokens": 77}}},
)
OPENAI_CHAT_JSON = {"object": "chat.completion", "model": "gpt-4o", "choices": [],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57,
                              "prompt_tokens_details": {"cached_tokens": 20}}}
OPENAI_CHAT_STREAM = (b'data: {"object":"chat.completion.chunk","model":"gpt-4o","choices":[{"delta":{"content":"a"}}],'
                      b'"usage":null}\n\n'
                      b'data: {"object":"chat.completion.chunk","model":"gpt-4o","choices":[],'
                      b'"usage":{"prompt_tokens":11,"completion_tokens":3}}\n\ndata: [DONE]\n\n')


def read(body: bytes, content_type: str, encoding: str = "", chunk: int = 7) -> dict | None:
    """Feed the body in small pieces, splitting lines and JSON anywhere, as a network would."""
    p = UsageParser(content_type, encoding)
    for i in range(0, len(body), chunk):
        p.feed(body[i:i + chunk])
    return p.finish()


def test_anthropic_streaming_takes_message_start_and_the_last_message_delta():
    assert read(ANTHROPIC_STREAM, "text/event-stream; charset=utf-8") == {
        "model": "claude-sonnet-4-5", "input_tokens": 1200, "output_tokens": 420,
        "cache_read_tokens": 5000, "cache_write_tokens": 300}


def test_anthropic_json():
    assert read(json.dumps(ANTHROPIC_JSON).encode(), "application/json") == {
        "model": "claude-opus-4-1", "input_tokens": 10, "output_tokens": 20, "cache_read_tokens": 30,
        "cache_write_tokens": 0}


def test_openai_responses_streaming_splits_cached_input():
    assert read(OPENAI_RESPONSES_STREAM, "text/event-stream") == {
        "model": "gpt-5-codex", "input_tokens": 500, "output_tokens": 77, "cache_read_tokens": 400,
        "cache_write_tokens": 0}


@pytest.mark.parametrize("body,ctype,want", [
    (json.dumps(OPENAI_CHAT_JSON).encode(), "application/json", (30, 7, 20)),
    (OPENAI_CHAT_STREAM, "text/event-stream", (11, 3, 0)),  # the last chunk carries it
])
def test_openai_chat_completions(body, ctype, want):
    got = read(body, ctype)
    assert got["model"] == "gpt-4o"
    assert (got["input_tokens"], got["output_tokens"], got["cache_read_tokens"]) == want


def test_openai_responses_json():
    body = json.dumps({"object": "response", "model": "o3", "usage": {"input_tokens": 5, "output_tokens": 6}})
    assert read(body.encode(), "application/json")["output_tokens"] == 6


def test_gzip_body_is_read():
    assert read(gzip.compress(ANTHROPIC_STREAM), "text/event-stream", "gzip", chunk=13)["output_tokens"] == 420


@pytest.mark.parametrize("body,ctype,encoding", [
    (b'{"type":"error","error":{"type":"overloaded_error"}}', "application/json", ""),  # an error: no usage
    (b"<html>not json</html>", "text/html", ""),
    (b"data: {not json\n\ndata: [DONE]\n\n", "text/event-stream", ""),
    (b'{"usage": {"input_tokens": -5, "output_tokens": "many"}}', "application/json", ""),
    (b"\x00\x01garbage", "text/event-stream", "br"),  # an encoding it cannot read
    (b"not gzip at all", "application/json", "gzip"),
])
def test_what_reports_no_usage_records_none(body, ctype, encoding):
    assert read(body, ctype, encoding) is None


def test_a_stream_cut_short_keeps_what_it_reported():
    cut = ANTHROPIC_STREAM[:ANTHROPIC_STREAM.index(b"message_delta")]
    got = read(cut, "text/event-stream")
    assert got["input_tokens"] == 1200 and got["output_tokens"] == 1
