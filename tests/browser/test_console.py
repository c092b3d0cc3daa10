"""The console in real headless Chromium (Debian's chromium + chromedriver, driven by selenium)
against the app served on loopback, with the session engine for real: one guest for the whole test
(the command agent, a repository hosted by the appliance's `local` forge).

The issue's scenario: sign in; create an environment with a custom allowlist; start a session; watch
the live log arrive; open the terminal and run a command; open the diff; comment on a line; send; see
the next turn; create a PR; share to the team and open it as a team mate (allowed) and as an outsider
(denied). Screenshots of each main page go to artifacts/screenshots/."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from helpers import ARTIFACTS, need_root

pytestmark = [pytest.mark.browser, pytest.mark.vm, pytest.mark.root]

SHOTS = ARTIFACTS / "screenshots"
PASSWORD = "correct horse battery"
FILES = {
    "app.py": "def add(a, b):\n    return a - b\n",
    "test_app.py": "from app import add\nassert add(2, 3) == 5, 'add is broken'\nprint('TESTS-OK')\n",
    ".gitignore": "__pycache__/\n",
}
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900"]


def chrome(profile_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROME_FLAGS + [f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def served():
    """Database, egress, sandbox manager, engine and the web app on 127.0.0.1 (one module, one guest)."""
    need_root()
    from werkzeug.security import generate_password_hash
    from werkzeug.serving import make_server

    from appliance.accounts.models import Team, TeamMember, User
    from appliance.db import database
    from appliance.forges.local import create_hosted_repository
    from appliance.repos.models import Repository
    from appliance.sandbox.hypervisor import Hypervisor
    from appliance.services import Services
    from webui import create_app

    from appliance_world import appliance_world, remove, state_dir

    state = state_dir("console")
    hv = Hypervisor("qemu:///system")
    try:
        with appliance_world(hv, state, bridge="apltest7", subnet="10.222.0.0/24", tap_prefix="aplw",
                             egress_table="applweb", max_running_sessions=1, idle_guest_timeout=3600.0,
                             memory_mb=768) as w:
            engine = w.engine
            engine.start()
            users = {n: User.create(username=n, password_hash=generate_password_hash(PASSWORD))
                     for n in ("alice", "bob", "eve")}
            team = Team.create(name="core")
            for n in ("alice", "bob"):
                TeamMember.create(team=team, user=users[n])
            path = create_hosted_repository(state, "acme/app", FILES)
            Repository.create(name="acme/app", url=str(path), forge="local")
            app = create_app(Services.build(w.cfg, sessions=engine.service))
            server = make_server("127.0.0.1", 0, app, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                yield {"url": f"http://127.0.0.1:{server.server_port}", "state": state}
            finally:
                server.shutdown()
                thread.join(10)
    finally:
        hv.close()
        database.close()
        remove(state)


class Page:
    def __init__(self, driver, base: str):
        self.d, self.base = driver, base
        SHOTS.mkdir(parents=True, exist_ok=True)

    def go(self, path: str):
        self.d.get(self.base + path)

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, selector)

    def wait(self, check, timeout: float = 60, what: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:  # the page is between loads
                pass
            time.sleep(0.3)
        self.shot(f"failed-{what or 'wait'}")
        raise AssertionError(f"timed out waiting for {what}; page: {self.d.current_url}\n{self.text()[-3000:]}")

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.TAG_NAME, "body").text

    def shot(self, name: str):
        self.d.save_screenshot(str(SHOTS / f"{name}.png"))

    def sign_in(self, who: str):
        self.d.delete_all_cookies()
        self.go("/login")
        self.css("#username").send_keys(who)
        self.css("#password").send_keys(PASSWORD)
        self.css("#sign-in").click()
        self.wait(lambda: "/login" not in self.d.current_url, 20, "sign in")


def test_the_console_end_to_end(served, tmp_path):
    from selenium.webdriver.support.ui import Select

    driver = chrome(tmp_path / "chrome-profile")
    p = Page(driver, served["url"])
    try:
        p.go("/login")
        p.shot("01-sign-in")
        p.sign_in("alice")

        # an environment with a custom allowlist: a bad wildcard is refused with the reason, then fixed
        p.go("/environments/new")
        p.css("#env-name").send_keys("dev")
        p.css("#level-custom").click()
        p.css("#domains").send_keys("pypi.org\nexa*mple.com")
        p.css("#variables").send_keys("GREETING=hello\n")
        p.css("#save-env").click()
        p.wait(lambda: "exa*mple.com" in p.css("#form-error").text, 20, "the wildcard refused")
        p.css("#domains").clear()
        p.css("#domains").send_keys("pypi.org\n*.example.com")
        p.shot("02-environment-form")
        p.css("#save-env").click()
        p.wait(lambda: "*.example.com" in p.css("#env-list").text, 20, "environment saved")
        p.shot("03-environments")

        # a new session with the command agent; submitting returns at once to the live session page
        p.go("/sessions/new")
        assert Select(p.css("#environment")).first_selected_option.text.startswith("dev")
        Select(p.css("#agent")).select_by_visible_text("command")
        p.css("#prompt").send_keys("Fix add() and run the tests")
        p.css("#command").send_keys("sed -i 's/return a - b/return a + b/' app.py && python3 test_app.py "
                                    "&& echo \"greeting: $GREETING\"")
        p.shot("04-new-session")
        p.css("#start").click()
        p.wait(lambda: "/sessions/ses-" in driver.current_url, 20, "session page")
        session_url = driver.current_url
        session_path = session_url[len(served["url"]):]
        p.wait(lambda: "queued" in p.css("#events").text, 20, "queued event")
        p.wait(lambda: driver.find_element("css selector", "body").get_attribute("data-live") == "1", 20, "websocket")
        # the provisioning steps and the agent's output arrive over the websocket, without reloads
        p.wait(lambda: "booting" in p.css("#events").text, 120, "booting")
        p.shot("05-session-booting")
        p.wait(lambda: "TESTS-OK" in p.css("#events").text, 420, "the agent's log")
        p.wait(lambda: "idle" in p.css("#status-box").text, 120, "idle")
        assert "greeting: hello" in p.css("#events").text
        assert "+1" in p.css("#diffstat").text and "−1" in p.css("#diffstat").text
        # the turn list beside the stream follows too (the page was loaded with turn 1 queued)
        p.wait(lambda: "completed" in p.css('#turns [data-turn="1"]').text, 30, "turn 1 completed in the turn list")
        assert driver.current_url == session_url  # all of it live
        p.shot("06-session-live-log")

        # the terminal: a shell in the session's guest over the websocket
        p.css("#tab-terminal").click()
        p.wait(lambda: driver.find_element("css selector", "body").get_attribute("data-terminal") == "open", 60,
               "terminal")
        p.css(".xterm-helper-textarea").send_keys("cd ~/work/app && echo answer-$((6*7)) && grep -c 'a + b' app.py\n")
        screen = ("var b = window.consoleTerminal.buffer.active, out = [];"
                  "for (var i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));"
                  "return out.join('\\n');")
        p.wait(lambda: "answer-42" in driver.execute_script(screen), 30, "terminal output")
        time.sleep(0.5)
        p.shot("07-terminal")

        # the diff: file list with counts, the file's changes; a comment on a line; send it as the next turn
        p.go(session_path)
        p.css("#diffstat").click()
        p.wait(lambda: "/diff" in driver.current_url, 20, "diff view")
        assert "app.py" in p.css("#files").text and "+1" in p.css("#files").text
        p.shot("08-diff")
        p.css('#patch tr.add[data-line="2"]').click()
        p.css("tr.editing textarea").send_keys("please keep a docstring")
        p.css("tr.editing button.primary").click()
        p.wait(lambda: "please keep a docstring" in p.css("#patch").text, 20, "comment saved")
        p.shot("09-diff-comment")
        p.css("#send-comments").click()
        p.wait(lambda: driver.current_url.endswith(session_path), 20, "back on the session")
        p.wait(lambda: "Please address these review comments" in p.css("#events").text, 60, "the next turn")
        p.wait(lambda: "turn 2" in p.css("#events").text, 300, "the next turn's end")
        # (the command agent runs the review text as its command, so this turn fails: its end is what counts)
        p.wait(lambda: p.css('#turns [data-turn="2"]').get_attribute("class") in ("turn turn-completed",
                                                                                  "turn turn-failed"),
               30, "turn 2 ended in the turn list")
        p.shot("10-next-turn")

        # a pull request on the local forge; its link is shown
        p.go(session_path + "/diff")
        p.css("#create-pr").click()
        p.wait(lambda: "merge_requests" in p.css("#pr-link").get_attribute("href"), 30, "PR link")
        p.shot("11-pull-request")

        # the egress tab
        p.go(session_path + "/egress")
        p.shot("12-egress")

        # share with the team; a team mate sees it read-only, an outsider gets a 404
        p.go(session_path)
        Select(p.css("#visibility")).select_by_visible_text("team")
        p.css("#share-save").click()
        p.wait(lambda: p.css("#share-link").get_attribute("value") == session_url, 20, "share link")
        p.shot("13-share")
        p.sign_in("bob")
        p.go(session_path)
        p.wait(lambda: "read-only" in p.css("#read-only").text, 20, "team mate's view")
        assert "Fix add()" in p.text() and "TESTS-OK" in p.css("#events").text
        assert not driver.find_elements("css selector", "#message-form, #tab-terminal, #share-form")
        p.shot("14-shared-team-mate")
        p.sign_in("eve")
        p.go(session_path)
        assert "404" in p.text() and "Fix add()" not in p.text()
        p.shot("15-outsider-404")

        # the session list, and the same pages on a phone-sized screen
        p.sign_in("alice")
        p.go("/")
        assert "Fix add()" in p.css("#session-list").text
        p.shot("16-session-list")
        driver.set_window_size(390, 844)
        p.go("/")
        p.shot("17-phone-session-list")
        p.go(session_path)
        p.shot("18-phone-session")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, f"the session page scrolls sideways on a phone ({width}px)"
    finally:
        driver.quit()
