"""The readable conversation: the agent's Markdown rendered and sanitized, tool calls folded,
cost and tokens per turn and per session, earlier events paged, any turn's diff."""

from __future__ import annotations

import re

import pytest
from test_console_pages import make_session, world  # noqa: F401  (the fixture)

from appliance.sessions.models import DiffFile, Event, Session, Status, Turn
from appliance.sessions.stream import emit
from webui.console.conversation import (
    render_markdown,
    tokens_of,
    usage_line,
    usage_of_turns,
)


def test_markdown_is_rendered():
    html = render_markdown("# Plan\n\n- **fix** `add()`\n- see [docs](https://example.test/x)\n\n```py\nx = 1\n```")
    assert "<h1>Plan</h1>" in html and "<strong>fix</strong>" in html and "<code>add()</code>" in html
    assert re.search(r'<a href="https://example.test/x" rel="noopener noreferrer nofollow">docs</a>', html)
    assert "<pre><code" in html and "x = 1" in html


@pytest.mark.parametrize("attack", [
    "<script>alert(1)</script>",
    "hello <img src=x onerror=alert(1)>",
    '<a href="https://ok.test" onclick="alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    '<iframe src="https://evil.test"></iframe>',
    "<svg onload=alert(1)>",
])
def test_no_html_from_the_agent_reaches_the_page(attack):
    html = str(render_markdown(attack))
    assert "<script" not in html and "<img" not in html and "<iframe" not in html and "<svg" not in html
    assert not re.search(r"<[^>]+\son\w+=", html)  # no on* attribute on any tag
    assert 'href="javascript' not in html.lower() and 'href="data:' not in html.lower()


def test_raw_html_is_shown_as_text():
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in render_markdown("<script>alert(1)</script>")


def test_tokens_and_cost():
    claude = {"input_tokens": 10, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 5,
              "output_tokens": 42}
    assert tokens_of(claude) == {"input": 1015, "output": 42}
    assert tokens_of({"input_tokens": 7, "cached_input_tokens": 3, "output_tokens": 2}) == {"input": 7, "output": 2}
    assert tokens_of(None) == {"input": 0, "output": 0}
    assert usage_line({"cost_usd": 0.01234, "usage": claude}) == "$0.0123 · 1,015 in / 42 out tokens"
    assert usage_line({}) == ""
    per_turn, total = usage_of_turns([(1, {"cost_usd": 0.5, "usage": {"input_tokens": 1, "output_tokens": 2}}),
                                      (2, {"usage": {"input_tokens": 10, "output_tokens": 20}})])
    assert per_turn[1] == {"cost_usd": 0.5, "input": 1, "output": 2}
    assert per_turn[2] == {"cost_usd": None, "input": 10, "output": 20}
    assert total == {"cost_usd": 0.5, "input": 11, "output": 22}


def _conversation(world):  # noqa: F811
    sid = make_session(world)
    turn = Turn.get(Turn.session == sid)
    emit(sid, "message", {"text": "I'll **fix** `add()`. <script>alert('x')</script>"}, turn)
    emit(sid, "tool_use", {"id": "t1", "name": "Edit", "summary": "app.py",
                           "input": {"file_path": "app.py", "old_string": "a - b", "new_string": "a + b"}}, turn)
    emit(sid, "tool_result", {"id": "t1", "ok": True, "output": "line 1\nline 2"}, turn)
    emit(sid, "turn_result", {"ok": True, "summary": "Done: `add` now adds.", "cost_usd": 0.0421,
                              "usage": {"input_tokens": 1200, "output_tokens": 340}}, turn)
    Turn.update(status="completed", commit_sha="abc123").where(Turn.id == turn.id).execute()
    return sid


def test_the_session_page_shows_markdown_folded_tools_and_cost(world):  # noqa: F811
    sid = _conversation(world)
    page = world["as_"]("alice").get(f"/sessions/{sid}").get_data(as_text=True)
    assert "<strong>fix</strong>" in page and "<code>add()</code>" in page
    assert "<script>alert('x')</script>" not in page and "&lt;script&gt;" in page
    assert re.search(r'<details class="tool"><summary>Edit: <code>app.py</code></summary><pre class="tool-input">',
                     page)
    assert "&#34;new_string&#34;: &#34;a + b&#34;" in page or '"new_string": "a + b"' in page
    assert '<details class="tool tool-result"><summary>result · 2 lines</summary>' in page
    assert "$0.0421 · 1,200 in / 340 out tokens" in page  # the turn's result and the turn list
    assert re.search(r'id="session-usage">Session: \$0\.0421 · 1,200 in / 340 out tokens', page)
    state = world["as_"]("alice").get(f"/sessions/{sid}/state").json
    assert "$0.0421" in state["turns_html"]


def test_earlier_events_load_page_by_page(world):  # noqa: F811
    from webui.console import sessions as console_sessions

    sid = make_session(world)
    Event.delete().where(Event.session == sid).execute()
    Event.insert_many([{"session": sid, "kind": "log", "data": {"text": f"line {i}"}} for i in range(1203)]).execute()
    alice = world["as_"]("alice")
    page = alice.get(f"/sessions/{sid}").get_data(as_text=True)
    assert page.count('class="ev ev-log') == console_sessions.EVENTS_PAGE
    assert "line 1202" in page and "line 702<" not in page
    before = int(re.search(r'id="load-earlier"[^>]*data-before="(\d+)"', page).group(1))
    got = alice.get(f"/sessions/{sid}/events/earlier?before={before}").json
    assert got["html"].count('class="ev ev-log') == 500 and "line 203<" in got["html"] and "line 202<" not in got["html"]
    assert got["before"]
    last = alice.get(f"/sessions/{sid}/events/earlier?before={got['before']}").json
    assert last["html"].count('class="ev ev-log') == 203 and "line 0<" in last["html"] and last["before"] is None
    assert world["as_"]("eve").get(f"/sessions/{sid}/events/earlier?before={before}").status_code == 404


def test_the_diff_of_an_earlier_turn(world):  # noqa: F811
    sid = make_session(world)  # turn 1: app.py
    second = Turn.create(session=sid, number=2, message="also the docs", status="completed")
    DiffFile.create(session=sid, turn=second, path="README.md", change="added", added=1, removed=0,
                    patch="@@ -0,0 +1 @@\n+# Add\n")
    Session.update(status=Status.IDLE).where(Session.id == sid).execute()
    alice = world["as_"]("alice")
    latest = alice.get(f"/sessions/{sid}/diff").get_data(as_text=True)
    assert 'id="diff-turn"' in latest and '<option value="2" selected>#2 (latest)</option>' in latest
    assert "README.md" in latest and "app.py" not in latest
    first = alice.get(f"/sessions/{sid}/diff?turn=1").get_data(as_text=True)
    assert "app.py" in first and "return a + b" in first and '<option value="1" selected>' in first
    assert "?turn=1&amp;file=app.py" in first
    missing = alice.get(f"/sessions/{sid}/diff?turn=9")
    assert missing.status_code == 400 and "turn 9 has no diff" in missing.get_data(as_text=True)


def test_the_live_stream_sends_the_rendered_body(world):  # noqa: F811
    from webui.console.sessions import event_view

    sid = _conversation(world)
    with world["app"].test_request_context():
        views = [event_view(e, with_html=True) for e in Event.select().where(Event.session == sid)]
    message = next(v for v in views if v["kind"] == "message")
    assert "<strong>fix</strong>" in message["html"] and "<script>" not in message["html"]
    assert "markdown" not in message  # the JSON frame carries only plain values
    tool = next(v for v in views if v["kind"] == "tool_use")
    assert tool["html"].startswith('<details class="tool">')


def test_open_in_cli_offers_the_teleport_command_to_the_owner(world):  # noqa: F811
    sid = make_session(world, visibility="public")
    page = world["as_"]("alice").get(f"/sessions/{sid}").get_data(as_text=True)
    assert f'<button type="button" id="open-in-cli" data-command="appliance teleport {sid}">' in page
    assert 'id="open-in-cli"' not in world["as_"]("eve").get(f"/sessions/{sid}").get_data(as_text=True)
