"""Issue 11, hole 7: turn-end notifications must not be a way into the host's own network.

Real HTTP servers on loopback play the targets an attacker would aim a webhook at (the console,
a metadata service, an internal API): none of them may receive the POST.
"""

import http.server
import socket
import threading
from typing import ClassVar

import pytest

from appliance.accounts.models import ApiToken, User
from appliance.repos.models import Repository
from appliance.sessions import notify
from appliance.sessions.service import NewSession, SessionService

from helpers import make_config


class Target(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list] = []

    def do_POST(self):
        Target.hits.append((self.server.server_address[0], self.path))
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        Target.hits.append((self.server.server_address[0], self.path))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


class Redirector(http.server.BaseHTTPRequestHandler):
    """A "public" endpoint that answers with a redirect to the internal target."""

    location = ""

    def do_POST(self):
        self.send_response(303)  # urllib follows 301/302/303 for a POST (as a GET)
        self.send_header("Location", Redirector.location)
        self.end_headers()

    def log_message(self, *a):
        pass


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def target():
    Target.hits.clear()
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target), _Server6(("::1", 0), Target)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield [s.server_address[1] for s in servers]
    for s in servers:
        s.shutdown()


def _session(cfg, user):
    Repository.get_or_create(name="acme/api", defaults={"url": "/srv/x.git"})
    return SessionService(cfg).create(user, NewSession("acme/api", "Fix the bug"))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/steal",
    "http://localhost:{port}/steal",
    "http://[::1]:{port6}/steal",
    "http://127.1:{port}/steal",
    "http://0x7f000001:{port}/steal",
])
def test_hole7_the_daemon_never_posts_to_loopback(db, tmp_path, target, url):
    port, port6 = target
    cfg = make_config(tmp_path / "s")
    user = User.create(username="mallory", webhook_url=url.format(port=port, port6=port6))
    notify.turn_ended(cfg, _session(cfg, user).id, 1, ok=True)
    assert Target.hits == []


def test_hole7_no_redirects(db, tmp_path, target):
    """A webhook on an allowed endpoint answers 303 to the internal target: not followed."""
    redirector = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Redirector)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    try:
        Redirector.location = f"http://127.0.0.1:{target[0]}/steal"
        cfg = make_config(tmp_path / "s", webhook_allowed_networks="127.0.0.2/32")  # the "public" one
        user = User.create(username="mallory", webhook_url=f"http://127.0.0.2:{redirector.server_address[1]}/hook")
        notify.turn_ended(cfg, _session(cfg, user).id, 1, ok=True)
        assert Target.hits == []
    finally:
        redirector.shutdown()


def test_hole7_admin_may_allow_an_internal_network(db, tmp_path, target):
    cfg = make_config(tmp_path / "s", webhook_allowed_networks="127.0.0.0/8")
    user = User.create(username="alice", webhook_url=f"http://127.0.0.1:{target[0]}/hook")
    notify.turn_ended(cfg, _session(cfg, user).id, 1, ok=True)
    assert Target.hits == [("127.0.0.1", "/hook")]


@pytest.mark.parametrize("url,why", [
    ("http://127.0.0.1:8080/x", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]/x", "loopback"),
    ("http://10.1.2.3/x", "private"),
    ("http://192.168.1.1/x", "private"),
    ("http://168.63.129.16/x", "platform"),
    ("http://localhost/x", "loopback"),
    ("http://[::ffff:127.0.0.1]/x", "loopback"),
])
def test_hole7_saving_an_internal_webhook_is_a_400_naming_the_field(db, cfg, url, why):
    from appliance.services import Services
    from webui import create_app

    alice = User.create(username="alice")
    client = create_app(Services.build(cfg, SessionService(cfg))).test_client()
    r = client.patch("/api/v1/me", json={"webhook_url": url}, headers={"Authorization": f"Bearer {ApiToken.issue(alice)}"})
    assert r.status_code == 400, url
    body = r.get_data(as_text=True)
    assert "webhook_url" in body and why in body, body
    assert User.get_by_id(alice.id).webhook_url == ""


@pytest.mark.parametrize("email", ["a@example.com,b@example.com", "a@example.com; b@example.com",
                                   "Alice <a@example.com>, b@example.com", "a@b@example.com", "<a@example.com>"])
def test_hole7_email_takes_exactly_one_address(db, cfg, email):
    from appliance.services import Services
    from webui import create_app

    alice = User.create(username="alice")
    client = create_app(Services.build(cfg, SessionService(cfg))).test_client()
    r = client.patch("/api/v1/me", json={"email": email}, headers={"Authorization": f"Bearer {ApiToken.issue(alice)}"})
    assert r.status_code == 400 and "email" in r.get_data(as_text=True)
    assert User.get_by_id(alice.id).email == ""


def test_hole7_the_hosts_own_public_address_and_platform_endpoints_are_refused():
    from appliance.sessions.webhook import allowed_networks, refusal

    assert "this host itself" in refusal("8.8.4.4", host_addresses=frozenset({"8.8.4.4"}))
    assert "platform" in refusal("168.63.129.16") and "platform" in refusal("fd00:ec2::254")
    assert "not a public" in refusal("100.100.100.200") or "private" in refusal("100.100.100.200")
    assert refusal("198.51.100.9") is not None  # documentation range: not public either
    assert refusal("8.8.8.8") is None
    assert refusal("10.20.1.2", allowed_networks("10.20.0.0/16")) is None
