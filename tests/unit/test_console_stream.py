"""The console's websockets against a real server thread (Flask's test client speaks no WebSocket):
the caller is checked on connect; a reconnect resumes after the last event with no gap or repeat."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import simple_websocket
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from appliance.accounts.models import Team, TeamMember, User
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Session
from appliance.sessions.service import NewSession, SessionService
from appliance.sessions.stream import emit
from webui import create_app

PASSWORD = "correct horse battery"


class Client(simple_websocket.Client):
    """simple_websocket's client handles only the first event of the handshake's read: frames the
    server sent right behind its handshake answer would wait for the next read. Handle them now."""

    def handshake(self):
        super().handshake()
        self.connected = self._handle_events()
        if not self.connected:  # closed right away: keep the reason for receive() to report
            self.connected = True
            self._closed_early = True

    def receive(self, timeout=None):
        if getattr(self, "_closed_early", False) and not self.input_buffer:
            raise simple_websocket.ConnectionClosed(self.close_reason, self.close_message)
        return super().receive(timeout)


@pytest.fixture
def served(db, cfg):
    users = {n: User.create(username=n, password_hash=generate_password_hash(PASSWORD)) for n in ("alice", "bob", "eve")}
    team = Team.create(name="core")
    for n in ("alice", "bob"):
        TeamMember.create(team=team, user=users[n])
    Repository.create(name="acme/api", url="/srv/api.git")
    service = SessionService(cfg)
    app = create_app(Services.build(cfg, sessions=service), test_config={"TESTING": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def cookie(who):
        client = app.test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
        client.post("/login", data={"username": who, "password": PASSWORD, "csrf_token": token})
        return f"session={client.get_cookie('session').value}"

    def connect(path, who=None, origin=None):
        headers = {"Cookie": cookie(who)} if who else {}
        if origin:
            headers["Origin"] = origin
        return Client.connect(f"ws://127.0.0.1:{server.server_port}{path}", headers=headers)

    try:
        yield dict(service=service, users=users, connect=connect, port=server.server_port)
    finally:
        server.shutdown()
        thread.join(5)


def receive_events(ws, count):
    out = []
    while len(out) < count:
        frame = json.loads(ws.receive(timeout=10))
        if frame["kind"] != "ping":
            out.append(frame)
    return out


def closed_as_not_found(ws) -> bool:
    try:
        ws.receive(timeout=10)
    except simple_websocket.ConnectionClosed as e:
        return e.reason == 4404
    return False


def test_stream_resumes_after_the_last_event_without_gaps_or_repeats(served):
    s = served["service"].create(served["users"]["alice"], NewSession("acme/api", "Fix it", agent="command"))
    ws = served["connect"](f"/ws/sessions/{s.id}/events", "alice")
    first = receive_events(ws, 1)
    assert first[0]["kind"] == "status" and "queued" in first[0]["text"]
    emit(s.id, "log", {"stream": "stdout", "text": "line 1"})
    (one,) = receive_events(ws, 1)
    assert one["text"] == "line 1"
    ws.close()
    # while nobody listens, more happens; the reconnect asks for what came after the last id it saw
    for i in (2, 3, 4):
        emit(s.id, "log", {"stream": "stdout", "text": f"line {i}"})
    ws = served["connect"](f"/ws/sessions/{s.id}/events?after={one['id']}", "alice")
    resumed = receive_events(ws, 3)
    assert [e["text"] for e in resumed] == ["line 2", "line 3", "line 4"]
    assert [e["id"] for e in resumed] == sorted(e["id"] for e in resumed) and resumed[0]["id"] > one["id"]
    emit(s.id, "log", {"stream": "stdout", "text": "line 5"})
    assert receive_events(ws, 1)[0]["text"] == "line 5"
    ws.close()


@pytest.mark.parametrize("kind", ["events", "terminal"])
def test_websockets_check_the_caller_on_connect(served, kind):
    s = served["service"].create(served["users"]["alice"], NewSession("acme/api", "Secret task", agent="command"))
    for who in (None, "bob", "eve"):
        ws = served["connect"](f"/ws/sessions/{s.id}/{kind}", who)
        assert closed_as_not_found(ws), (who, kind)
    ws = served["connect"](f"/ws/sessions/ses-nope/{kind}", "alice")
    assert closed_as_not_found(ws)
    # another site's page cannot ride on the user's cookie
    ws = served["connect"](f"/ws/sessions/{s.id}/{kind}", "alice", origin="http://evil.example")
    assert closed_as_not_found(ws)


def test_terminal_is_for_the_owner_only_even_on_a_team_share(served):
    s = served["service"].create(served["users"]["alice"], NewSession("acme/api", "Team task", agent="command",
                                                                     visibility="team"))
    ws = served["connect"](f"/ws/sessions/{s.id}/events", "bob")
    assert receive_events(ws, 1)[0]["kind"] == "status"  # bob may watch the team share…
    ws.close()
    ws = served["connect"](f"/ws/sessions/{s.id}/terminal", "bob")
    assert closed_as_not_found(ws)  # …but gets no shell
    ws = served["connect"](f"/ws/sessions/{s.id}/terminal", "alice",
                           origin=f"http://127.0.0.1:{served['port']}")
    assert "no running guest" in ws.receive(timeout=10)  # the owner passes the check; no guest yet


def test_stream_stops_when_the_session_is_made_private(served):
    s = served["service"].create(served["users"]["alice"], NewSession("acme/api", "Shared", agent="command",
                                                                     visibility="team"))
    ws = served["connect"](f"/ws/sessions/{s.id}/events", "bob")
    receive_events(ws, 1)
    served["service"].set_visibility(served["users"]["alice"], s.id, "private")
    emit(s.id, "log", {"stream": "stdout", "text": "after unsharing"})
    try:
        frame = ws.receive(timeout=10)
    except simple_websocket.ConnectionClosed as e:
        assert e.reason == 4404
    else:
        pytest.fail(f"still streaming: {frame}")


def test_console_terminal_drives_the_same_shell_as_the_api(served, cfg):
    """The console's framing over the shared terminal: keystrokes in, text out, a resize clamped by
    the one shell implementation, the shell closed when the page goes."""
    from appliance.models import Sandbox

    from helpers import FakeManager

    alice = served["users"]["alice"]
    s = served["service"].create(alice, NewSession("acme/api", "Task", agent="command"))
    manager = FakeManager()
    served["service"].sandboxes = manager
    sb = Sandbox.create(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=1, state="running",
                        address="10.213.0.9", purpose="session", session_id=s.id)
    Session.update(sandbox_id=sb.id).where(Session.id == s.id).execute()
    ws = served["connect"](f"/ws/sessions/{s.id}/terminal", "alice", origin=f"http://127.0.0.1:{served['port']}")
    ws.send(json.dumps({"r": [5000, 3]}))
    assert ws.receive(timeout=10) == "$ "
    assert manager.chan.pty == ("xterm-256color", 1000, 10)  # clamped to 10..1000
    ws.send(json.dumps({"d": "echo hi\n"}))
    assert ws.receive(timeout=10) == "ECHO HI\n"
    ws.send(json.dumps({"r": [120, 40]}))
    ws.send(json.dumps({"d": "exit\n"}))
    with pytest.raises(simple_websocket.ConnectionClosed):
        while True:
            ws.receive(timeout=10)
    assert manager.chan.resized == [(120, 40)]
    deadline = time.monotonic() + 10  # the bridge closes the shell once its loop sees the end
    while not manager.chan.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.chan.closed


def test_stream_stops_when_its_viewer_is_disabled(served):
    """An admin disables bob while his browser follows a session: the open stream ends too."""
    from appliance.accounts.service import set_disabled

    s = served["service"].create(served["users"]["alice"], NewSession("acme/api", "Shared", agent="command",
                                                                     visibility="team"))
    ws = served["connect"](f"/ws/sessions/{s.id}/events", "bob")
    receive_events(ws, 1)
    set_disabled(served["users"]["bob"], True)
    emit(s.id, "log", {"stream": "stdout", "text": "after disabling"})
    assert closed_as_not_found(ws)


def test_an_open_terminal_stops_taking_keys_when_its_user_is_disabled(served, cfg):
    from appliance.accounts.service import set_disabled
    from appliance.models import Sandbox

    from helpers import FakeManager

    alice = served["users"]["alice"]
    s = served["service"].create(alice, NewSession("acme/api", "Task", agent="command"))
    manager = FakeManager()
    served["service"].sandboxes = manager
    sb = Sandbox.create(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=1, state="running",
                        address="10.213.0.9", purpose="session", session_id=s.id)
    Session.update(sandbox_id=sb.id).where(Session.id == s.id).execute()
    ws = served["connect"](f"/ws/sessions/{s.id}/terminal", "alice", origin=f"http://127.0.0.1:{served['port']}")
    ws.send(json.dumps({"r": [80, 24]}))
    assert ws.receive(timeout=10) == "$ "
    set_disabled(alice, True)
    ws.send(json.dumps({"d": "echo hi\n"}))
    said = []
    with pytest.raises(simple_websocket.ConnectionClosed):
        while True:
            said.append(ws.receive(timeout=10))
    assert any("account was disabled" in m for m in said) and not any("ECHO HI" in m for m in said)
    deadline = time.monotonic() + 10
    while not manager.chan.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.chan.closed
