"""Security review, hole 8 (and the CR/LF case of hole 12): the sign-in page's `next` must only
ever lead to a path on this console.

Browsers drop tabs and newlines inside URLs, so `/<TAB>/evil.example` becomes `//evil.example`:
another site. Each test is one attack from the review (issue 11) through the real console.
"""

from __future__ import annotations

import re

import pytest
from werkzeug.security import generate_password_hash

from appliance.accounts.models import User
from appliance.services import Services
from webui import create_app

PASSWORD = "correct horse battery"
ATTACKS = [
    "/%09/evil.example",  # the review's: Location: //evil.example
    "/%0a/evil.example",
    "/%0d/evil.example",
    "/%0b/evil.example",
    "/%20/evil.example",
    "/%5c/evil.example",  # backslash: /\\evil.example
    "/%09%5cevil.example",
    "//evil.example",
    "https://evil.example/",
    "%09//evil.example",
    "/x%0d%0aSet-Cookie:%20a=b",  # header splitting: a 500 before, must be a plain redirect
    "javascript:alert(1)",
]


@pytest.fixture
def client(db, cfg):
    User.create(username="alice", password_hash=generate_password_hash(PASSWORD))
    return create_app(Services.build(cfg), test_config={"TESTING": True}).test_client()


def _sign_in(client, next_: str):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post(f"/login?next={next_}", data={"username": "alice", "password": PASSWORD,
                                                      "csrf_token": token})


def _stays_here(location: str) -> bool:
    cleaned = re.sub(r"[\x00-\x20\x7f\\\\]", "", location)  # what a browser makes of it
    return location.startswith("/") and not cleaned.startswith("//") and ":" not in cleaned.split("/")[1]


@pytest.mark.parametrize("next_", ATTACKS)
def test_next_after_sign_in_never_leaves_the_console(client, next_):
    r = _sign_in(client, next_)
    assert r.status_code == 302
    assert _stays_here(r.headers["Location"]), r.headers["Location"]
    assert "Set-Cookie: a=b" not in str(r.headers)


@pytest.mark.parametrize("next_", ATTACKS)
def test_next_when_already_signed_in_never_leaves_the_console(client, next_):
    _sign_in(client, "/")
    r = client.get(f"/login?next={next_}")
    assert r.status_code == 302
    assert _stays_here(r.headers["Location"]), r.headers["Location"]


def test_a_local_next_is_kept(client):
    r = _sign_in(client, "/sessions/ses-1%3Ftab%3Ddiff")
    assert r.headers["Location"] == "/sessions/ses-1?tab=diff"
