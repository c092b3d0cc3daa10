"""`appliance ssh SESSION` through the appliance's websocket, with the guest's SSH replaced by a
fake channel (helpers.FakeManager) (the shared terminal's bridging and the client's pumping are what is tested here; the real
paramiko shell is GuestSSH's, tested with real guests in tests/vm)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from werkzeug.serving import make_server

from appliance.accounts.models import ApiToken, User
from appliance.client import Client, Login
from appliance.client.terminal import attach
from appliance.errors import ApplianceError
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Session
from appliance.sessions.service import SessionService
from webui import create_app

from helpers import FakeManager


@pytest.fixture
def served(db, cfg):
    alice = User.create(username="alice")
    repo = Repository.create(name="acme/api", url="/srv/api.git")
    session = Session.create(owner=alice, repository=repo, base_branch="main", work_branch="w", status="idle")
    manager = FakeManager()
    app = create_app(Services.build(cfg, sessions=SessionService(cfg, sandboxes=manager)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    client = Client(Login(f"http://127.0.0.1:{server.server_port}", ApiToken.issue(alice)))
    yield client, session, manager
    server.shutdown()
    t.join(5)


def run_attach(client, session_id, typed: bytes, tmp_path):
    r, w = os.pipe()
    os.write(w, typed)
    os.close(w)
    out_path = tmp_path / "out"
    with open(out_path, "wb") as out, os.fdopen(r, "rb") as inp:
        code = attach(client, session_id, stdin=inp, stdout=out)
    return code, out_path.read_bytes()


def test_a_shell_in_the_live_guest(served, tmp_path):
    client, session, manager = served
    sb = Sandbox.create(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=1, state="running",
                        address="10.213.0.9", purpose="session", session_id=session.id)
    Session.update(sandbox_id=sb.id).where(Session.id == session.id).execute()
    code, out = run_attach(client, session.id, b"echo hi\nexit\n", tmp_path)
    assert code == 7
    assert b"ECHO HI" in out
    assert manager.chan.pty == ("xterm-256color", 80, 24)
    deadline = time.monotonic() + 5  # the server side closes the channel once the socket ends
    while not manager.chan.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.chan.closed


def test_no_live_guest_is_a_clear_error(served, tmp_path):
    client, session, _ = served
    with pytest.raises(ApplianceError, match="no running guest"):
        run_attach(client, session.id, b"", tmp_path)


def test_the_appliance_closing_first_still_shows_its_reason(served, tmp_path, monkeypatch):
    """The appliance may say "no running guest" and close before the client's first send (a race
    CI hit): the reason is still buffered, so it must reach the user, not a ConnectionClosed."""
    import simple_websocket

    client, session, _ = served
    connect = simple_websocket.Client.connect

    def connect_then_wait_for_close(*args, **kwargs):
        ws = connect(*args, **kwargs)
        deadline = time.monotonic() + 5
        while ws.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not ws.connected
        return ws

    monkeypatch.setattr(simple_websocket.Client, "connect", connect_then_wait_for_close)
    with pytest.raises(ApplianceError, match="no running guest"):
        run_attach(client, session.id, b"", tmp_path)
