"""Best-of-N's compare view in real headless Chromium against the console on loopback (real
SQLite, no guests: the attempts' diffs are written as the engine writes them). Screenshots go to
artifacts/screenshots/:
  compare-attempts.png  two attempts of one task side by side: status, diffstat, result, diffs
  compare-picked.png    after "Pick this one" on attempt 2: it is marked picked, attempt 1 completed
"""

from __future__ import annotations

import threading

import pytest
from test_console import PASSWORD, Page, chrome
from werkzeug.security import generate_password_hash

pytestmark = [pytest.mark.browser]


@pytest.fixture
def served(db, cfg):
    from werkzeug.serving import make_server

    from appliance.accounts.models import User
    from appliance.repos.models import Repository
    from appliance.services import Services
    from appliance.sessions import attempts
    from appliance.sessions.models import DiffFile, Session, Status, Turn
    from appliance.sessions.service import NewSession, SessionService
    from appliance.sessions.stream import emit
    from webui import create_app

    alice = User.create(username="alice", password_hash=generate_password_hash(PASSWORD))
    Repository.create(name="acme/app", url="/srv/app.git")
    service = SessionService(cfg)
    group = attempts.create(service, alice, NewSession("acme/app", "Fix add() so its test passes"), 2)
    fixes = ["    return b + a  # reordered", "    return a + b"]
    for s, fix in zip(group, fixes, strict=True):
        turn = Turn.get(Turn.session == s)
        DiffFile.create(session=s, turn=turn, path="app.py", change="modified", added=1, removed=1,
                        patch=f"@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+{fix}\n")
        emit(s, "turn_result", {"ok": True, "summary": f"Changed the operator; tests pass ({s.attempt})."}, turn)
        Turn.update(status="completed").where(Turn.id == turn.id).execute()
        Session.update(status=Status.IDLE, diff_added=1, diff_removed=1).where(Session.id == s.id).execute()
    app = create_app(Services.build(cfg, service))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_port}", "group": group[0].group_id,
               "sessions": [s.id for s in group]}
    finally:
        server.shutdown()
        thread.join(10)


def test_compare_side_by_side_and_pick_one(served, tmp_path):
    from selenium.webdriver.common.by import By

    from appliance.sessions.models import Session, Status

    driver = chrome(tmp_path / "profile")
    try:
        page = Page(driver, served["url"])
        page.sign_in("alice")
        page.go(f"/groups/{served['group']}")
        page.wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#compare .attempt")) == 2, 20, "two attempts")
        columns = driver.find_elements(By.CSS_SELECTOR, "#compare .attempt")
        # side by side: the second column starts to the right of the first, on the same row
        assert columns[1].location["x"] > columns[0].location["x"] + columns[0].size["width"] / 2
        assert columns[1].location["y"] == columns[0].location["y"]
        assert "return b + a" in columns[0].text and "return a + b" in columns[1].text
        assert "tests pass (2)" in columns[1].text and "+1 −1" in columns[1].text
        page.shot("compare-attempts")
        columns[1].find_element(By.CSS_SELECTOR, "button.pick").click()
        page.wait(lambda: page.css("#picked-note"), 20, "the pick")
        page.shot("compare-picked")
        assert "picked" in driver.find_elements(By.CSS_SELECTOR, "#compare .attempt")[1].text
        assert not driver.find_elements(By.CSS_SELECTOR, "button.pick")
        first, second = served["sessions"]
        assert Session.get_by_id(first).status == Status.COMPLETED
        assert Session.get_by_id(second).status == Status.IDLE
    finally:
        driver.quit()
