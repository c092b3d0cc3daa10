"""The readable conversation and the handoff in real headless Chromium (Debian's chromium +
chromedriver, driven by selenium) against the console served on loopback with real SQLite.

No guest: the session's turn and its events are written as the engine writes them (the vm browser
test, test_console.py, covers a live turn). Screenshots go to artifacts/screenshots/:
  conversation-markdown.png     the agent's Markdown rendered, the injected <script> shown as text,
                                tool calls folded, the turn's and the session's cost and tokens
  conversation-tool-open.png    one tool call unfolded: its input and its result
  conversation-open-in-cli.png  "Open in CLI" clicked: "Copied", the teleport command
"""

from __future__ import annotations

import threading

import pytest
from test_console import PASSWORD, SHOTS, Page, chrome
from werkzeug.security import generate_password_hash

pytestmark = [pytest.mark.browser]


@pytest.fixture
def served(db, cfg):
    from werkzeug.serving import make_server

    from appliance.accounts.models import User
    from appliance.repos.models import Repository
    from appliance.services import Services
    from appliance.sessions.models import Session, Status, Turn
    from appliance.sessions.service import NewSession, SessionService
    from appliance.sessions.stream import emit
    from webui import create_app

    alice = User.create(username="alice", password_hash=generate_password_hash(PASSWORD))
    Repository.create(name="acme/app", url="/srv/app.git", credential_kind="token", credential_secret="x")
    service = SessionService(cfg)
    s = service.create(alice, NewSession("acme/app", "Why does add() fail its test?", agent="claude-code"))
    turn = Turn.get(Turn.session == s)
    from appliance.sessions.models import Event

    # a long setup log first: the conversation is among the newest 500 events, the log's head is not
    Event.insert_many([{"session": s.id, "turn": turn.id, "kind": "log",
                        "data": {"stream": "setup", "text": f"setup {i}"}} for i in range(600)]).execute()
    emit(s, "status", {"status": Status.RUNNING, "detail": "agent"}, turn)
    emit(s, "message", {"text": "Let me look at **`app.py`** first.\n\n<script>document.title='owned'</script>"}, turn)
    emit(s, "tool_use", {"id": "t1", "name": "Read", "summary": "app.py", "input": {"file_path": "/work/app.py"}},
         turn)
    emit(s, "tool_result", {"id": "t1", "ok": True, "output": "def add(a, b):\n    return a - b\n"}, turn)
    emit(s, "message", {"text": "## The cause\n\n`add()` **subtracts**:\n\n```python\nreturn a - b\n```\n\n"
                                "| test | result |\n|---|---|\n| `add(2, 3) == 5` | fails (-1) |\n\n"
                                "See [the docs](javascript:alert(1)) — that link must not be one."}, turn)
    emit(s, "turn_result", {"ok": True, "summary": "`add()` subtracts instead of adding; change `-` to `+`.",
                            "cost_usd": 0.0421, "usage": {"input_tokens": 1200, "cache_read_input_tokens": 9000,
                                                          "output_tokens": 340}}, turn)
    Turn.update(status="completed").where(Turn.id == turn.id).execute()
    Session.update(status=Status.IDLE).where(Session.id == s.id).execute()
    app = create_app(Services.build(cfg, service))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_port}", "session": s.id}
    finally:
        server.shutdown()
        thread.join(10)


def test_markdown_folded_tool_calls_cost_and_open_in_cli(served, tmp_path):
    driver = chrome(tmp_path / "profile")
    try:
        page = Page(driver, served["url"])
        page.sign_in("alice")
        sid = served["session"]
        page.go(f"/sessions/{sid}")
        page.wait(lambda: page.css("#events .ev-message .md"), 20, "the conversation")
        # Markdown: headings, emphasis, code, a table; the agent's HTML is text, its javascript: link no link
        assert page.css("#events .md h2").text == "The cause"
        assert page.css("#events .md table td code").text == "add(2, 3) == 5"
        assert driver.title != "owned"
        assert "<script>document.title='owned'</script>" in page.text()
        assert not driver.find_elements("css selector", "#events .md a[href^='javascript']")
        # the tool call is folded: its input is not visible until it is opened
        tool = page.css("#events details.tool")
        assert tool.get_attribute("open") is None and not page.css("#events .tool-input").is_displayed()
        # cost and tokens: the turn's result, the turn list, the session
        assert "$0.0421 · 10,200 in / 340 out tokens" in page.css("#events .ev-turn_result .usage").text
        assert "$0.0421" in page.css("#turns .turn-usage").text
        assert page.css("#session-usage").text == "Session: $0.0421 · 10,200 in / 340 out tokens"
        page.shot("conversation-markdown")

        tool.find_element("css selector", "summary").click()
        page.wait(lambda: page.css("#events .tool-input").is_displayed(), 10, "the tool call to open")
        assert '"file_path": "/work/app.py"' in page.css("#events .tool-input").text
        page.css("#events details.tool-result summary").click()
        page.wait(lambda: "return a - b" in page.css("#events .tool-output").text, 10, "the tool result")
        page.shot("conversation-tool-open")

        # Open in CLI: the teleport command lands on the clipboard
        driver.execute_cdp_cmd("Browser.grantPermissions", {
            "origin": served["url"], "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        button = page.css("#open-in-cli")
        assert button.get_attribute("data-command") == f"appliance teleport {sid}"
        button.click()
        page.wait(lambda: page.css("#open-in-cli-done").text == "Copied", 10, "the copy")
        copied = driver.execute_async_script(
            "var done = arguments[arguments.length - 1];"
            "navigator.clipboard.readText().then(done, function (e) { done('error: ' + e); });")
        assert copied == f"appliance teleport {sid}"
        page.shot("conversation-open-in-cli")

        # "Load earlier events": the setup log's head comes in above what was shown
        shown = len(driver.find_elements("css selector", "#events li.ev"))
        assert shown == 500 and "setup 0\n" not in page.css("#events").text + "\n"
        page.css("#load-earlier").click()
        page.wait(lambda: len(driver.find_elements("css selector", "#events li.ev")) > shown, 10, "earlier events")
        first_log = driver.find_elements("css selector", "#events li.ev-log")[0]
        assert first_log.find_element("css selector", "pre").text == "setup 0"
        assert len(driver.find_elements("css selector", "#events li.ev")) == shown + 607 - 500
        assert not driver.find_elements("css selector", "#load-earlier")  # nothing older left
    finally:
        driver.quit()
    assert (SHOTS / "conversation-markdown.png").stat().st_size > 0
