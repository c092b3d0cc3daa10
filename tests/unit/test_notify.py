"""Turn-end notifications: the owner's webhook gets the JSON note, SMTP gets the mail; dead
endpoints never break anything."""

import http.server
import json
import socketserver
import threading

import pytest

from appliance.accounts.models import User
from appliance.repos.models import Repository
from appliance.sessions import notify
from appliance.sessions.service import NewSession, SessionService

from helpers import make_config, schema_checked_client


class Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


class Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept one message (a stand-in for the company's mail server)."""

    mails: list = []

    def handle(self):
        self.wfile.write(b"220 stand-in\r\n")
        data, in_data = [], False
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            if in_data:
                if line == ".":
                    in_data = False
                    Smtp.mails.append("\n".join(data))
                    self.wfile.write(b"250 ok\r\n")
                else:
                    data.append(line)
                continue
            verb = line.split(" ")[0].upper()
            if verb == "DATA":
                in_data = True
                self.wfile.write(b"354 go\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def servers():
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Smtp)
    for server in (hook, smtp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    Hook.received.clear()
    Smtp.mails.clear()
    yield hook.server_address[1], smtp.server_address[1]
    hook.shutdown()
    smtp.shutdown()


def test_webhook_and_mail(db, tmp_path, servers):
    hook_port, smtp_port = servers
    cfg = make_config(tmp_path / "s", smtp_host="127.0.0.1", smtp_port=smtp_port, public_url="https://appl.example/",
                      webhook_allowed_networks="127.0.0.1/32")  # the stand-in hook is on loopback
    user = User.create(username="alice", webhook_url=f"http://127.0.0.1:{hook_port}/hook", email="alice@example.com")
    Repository.create(name="acme/api", url="/srv/x.git")
    s = SessionService(cfg).create(user, NewSession("acme/api", "Fix the bug"))
    notify.turn_ended(cfg, s.id, 1, ok=True)
    assert Hook.received[0]["session"] == s.id and Hook.received[0]["url"] == f"https://appl.example/sessions/{s.id}"
    assert "Subject: [appliance] Fix the bug is waiting for you" in Smtp.mails[0]
    assert "To: alice@example.com" in Smtp.mails[0]


def test_dead_endpoints_are_only_logged(db, tmp_path, caplog):
    cfg = make_config(tmp_path / "s", smtp_host="127.0.0.1", smtp_port=9, webhook_allowed_networks="127.0.0.1/32")
    user = User.create(username="bob", webhook_url="http://127.0.0.1:9/hook", email="bob@example.com")
    Repository.create(name="acme/api", url="/srv/x.git")
    s = SessionService(cfg).create(user, NewSession("acme/api", "x"))
    notify.turn_ended(cfg, s.id, 1, ok=False)  # must not raise
    assert "webhook for bob failed" in caplog.text and "mail to bob@example.com failed" in caplog.text


def test_users_set_their_own_webhook_and_email(db, cfg):
    from appliance.accounts.models import ApiToken
    from appliance.services import Services
    from webui import create_app

    alice = User.create(username="alice")
    client = schema_checked_client(create_app(Services.build(cfg)))
    headers = {"Authorization": f"Bearer {ApiToken.issue(alice)}"}
    r = client.patch("/api/v1/me", json={"webhook_url": "https://hooks.example/x", "email": "a@example.com"},
                     headers=headers)
    assert r.status_code == 200 and r.json["webhook_url"] == "https://hooks.example/x"
    assert client.patch("/api/v1/me", json={"webhook_url": "file:///etc/passwd"}, headers=headers).status_code == 400
    assert client.patch("/api/v1/me", json={"email": "no-at-sign"}, headers=headers).status_code == 400
    assert client.patch("/api/v1/me", json={"email": "x@y"}).status_code == 401
    assert User.get_by_id(alice.id).email == "a@example.com"
