"""Helpers shared by every test folder (import as `from helpers import ...`)."""

from __future__ import annotations

import os
import queue
import re
from pathlib import Path

import pytest

from appliance_base import config as config_mod

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"


def shared_image_dir() -> Path:
    """Images built once per run by scripts/test (keyed by profile hash), reused by every test."""
    return Path(os.environ.get("APPLIANCE_TEST_IMAGE_DIR", "/var/lib/appliance/images"))


def make_config(state_dir: Path, **overrides) -> config_mod.Config:
    """A configuration that reads no file and no environment: only defaults and these overrides."""
    # guests boot the small `minimal` image unless a test asks for another (the product's default
    # is `general`; tests that need its toolchains say so)
    values = {"state_dir": str(state_dir), "image_dir": str(shared_image_dir()), "default_profile": "minimal"}
    values.update({k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()})
    return config_mod.load(env={"APPLIANCE_CONFIG": str(state_dir / "no-such-file.toml")}, overrides=values)


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (run through scripts/test)")


class StandInForge:
    """A stand-in for a forge's REST API (the only kind of stand-in besides the model API): every
    pull request asked for is recorded and answered with `url` (`{session}`-free, numbered)."""

    def __init__(self, url: str = "http://forge.invalid/pr/{number}"):
        self.url = url
        self.requests: list[dict] = []

    def __call__(self, repository, state_dir=None):  # used as SessionService(forge_for=…)
        return self

    def create_pull_request(self, head: str, base: str, title: str, body: str = "", **_):
        from appliance.forges.base import PullRequest

        self.requests.append({"head": head, "base": base, "title": title, "body": body})
        number = len(self.requests)
        return PullRequest(url=self.url.format(number=number, head=head), number=number, state="open")


def response_schema_errors(app, method: str, path: str, status: int, body) -> list[str]:
    """What is wrong with a JSON API response, judged by the app's own OpenAPI document: its status
    must be documented for the operation and its body must match that status's schema."""
    from openapi_schema_validator import OAS30Validator
    from werkzeug.exceptions import MethodNotAllowed, NotFound
    from werkzeug.routing.exceptions import WebsocketMismatch

    from webui.openapi import document, documented

    with app.test_request_context():
        doc = document()
        try:
            try:
                endpoint, _ = app.url_map.bind("localhost").match(path, method)
            except WebsocketMismatch:  # a websocket route answering a plain request (401/404 first)
                endpoint, _ = app.url_map.bind("localhost", url_scheme="ws").match(path, method, websocket=True)
        except (NotFound, MethodNotAllowed):
            return []  # no such route: Flask's own 404/405, not an operation of the document
        if not documented(endpoint):
            return []
        rule = next(r for r in app.url_map.iter_rules(endpoint))
    doc_path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
    op = doc["paths"][doc_path][method.lower()]
    documented_response = op["responses"].get(str(status))
    if documented_response is None:
        return [f"{method} {doc_path}: status {status} is not documented ({sorted(op['responses'])})"]
    content = documented_response.get("content", {}).get("application/json")
    if content is None:
        return []
    root = {**content["schema"], "components": doc["components"]}
    return [f"{method} {doc_path} {status}: {e.message} at {list(e.absolute_path)}"
            for e in OAS30Validator(root).iter_errors(body)]


def schema_checked_client(app):
    """A test client for `app` that fails the test when a JSON API response does not match the
    OpenAPI document (every API test's responses are checked this way)."""
    from flask.testing import FlaskClient

    class SchemaCheckedClient(FlaskClient):
        def open(self, *args, **kwargs):
            response = super().open(*args, **kwargs)
            request = response.request
            if request.path.startswith("/api/") and response.mimetype == "application/json":
                errors = response_schema_errors(app, request.method, request.path, response.status_code,
                                                response.get_json())
                assert not errors, errors
            return response

    app.test_client_class = SchemaCheckedClient
    return app.test_client()


# --- a guest shell without a guest: for the terminal bridges (real shells are tested in tests/vm) ---

class FakeChannel:
    """A shell that upper-cases what it is sent and ends at 'exit'."""

    def __init__(self):
        self.out: queue.Queue = queue.Queue()
        self.closed = False
        self.pty = None
        self.resized = []

    def get_pty(self, term, width, height):
        self.pty = (term, width, height)

    def invoke_shell(self):
        self.out.put(b"$ ")

    def resize_pty(self, width, height):
        self.resized.append((width, height))

    def sendall(self, data):
        for line in data.split(b"\n"):
            if line == b"exit":
                self.out.put(b"")
                return
            if line:
                self.out.put(line.upper() + b"\n")

    def recv(self, n):
        return self.out.get(timeout=10)

    def recv_exit_status(self):
        return 7

    def close(self):
        self.closed = True


class FakeGuest:
    def __init__(self, chan):
        self.chan = chan
        self.transport = self

    def open_session(self):
        return self.chan

    def connect(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        pass


class FakeManager:
    def __init__(self):
        self.chan = FakeChannel()

    def ssh(self, sandbox):
        return FakeGuest(self.chan)


CONSOLE_PASSWORD = "correct horse battery"


def people(names=("alice", "bob", "eve", "admin"), team_of=("alice", "bob")):
    """Users who can sign in with CONSOLE_PASSWORD ("admin" is one), and team "core" of `team_of`."""
    from werkzeug.security import generate_password_hash

    from appliance.accounts.models import Team, TeamMember, User

    digest = generate_password_hash(CONSOLE_PASSWORD)
    users = {n: User.create(username=n, is_admin=(n == "admin"), password_hash=digest) for n in names}
    team = Team.create(name="core")
    for n in team_of:
        TeamMember.create(team=team, user=users[n])
    return users, team


def console_login(app, who: str):
    """A test client signed in to the console as `who`, and the CSRF token its forms carry."""
    import re

    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/login", data={"username": who, "password": CONSOLE_PASSWORD, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/account").get_data(as_text=True)).group(1)
    return client, csrf


def api_caller(app, user=None):
    """`call(method, path, **kw)` on `/api/v1` as `user` (with a fresh token of theirs) or, for None,
    anonymously; every response is checked against the OpenAPI document."""
    from appliance.accounts.models import ApiToken

    client = schema_checked_client(app)
    token = ApiToken.issue(user) if user is not None else None

    def call(method: str, path: str, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return getattr(client, method)(f"/api/v1{path}", headers=headers, **kw)
    return call
