"""The OpenAPI document: valid OpenAPI 3.0 (openapi-spec-validator), covering every API route
with every method, each operation with its request and response schemas; the route validation
and the document use the same shapes. (Every response the API tests receive is checked against
the document by `helpers.schema_checked_client`.)"""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from appliance.accounts.models import ApiToken, User
from appliance.services import Services
from webui import create_app
from webui.openapi import documented
from webui.schemas import REQUESTS, check_body

from helpers import response_schema_errors, schema_checked_client


@pytest.fixture
def app(db, cfg):
    return create_app(Services.build(cfg))


@pytest.fixture
def doc(app):
    return app.test_client().get("/api/v1/openapi.json").json


def api_rules(app):
    """(path, method) of every route a client of the API may call: /api/…, /metrics, /healthz."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule in ("/metrics", "/healthz"):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            out |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def test_the_document_is_valid_openapi_3(doc):
    assert doc["openapi"] == "3.0.3"
    validate(doc)


def test_the_document_covers_exactly_the_routes(app, doc):
    in_doc = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert in_doc == api_rules(app)
    for name in ("/api/v1/me", "/api/v1/sessions/{session_id}/transcript", "/api/v1/sessions/{session_id}/terminal"):
        assert name in doc["paths"]


def test_every_operation_has_typed_responses_and_bodies(doc):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (path, method)
            success = [s for s in op["responses"] if s.startswith(("2", "1"))]
            assert success, (path, method, "no success response")
            for status, response in op["responses"].items():
                if status.startswith("1"):
                    continue
                content = response.get("content")
                assert content and next(iter(content.values()))["schema"], (path, method, status)
            if method in ("post", "put", "patch") and "requestBody" not in op:
                endpoint_free = path.endswith(("/cancel", "/interrupt", "/complete", "/send", "/pr", "/archive",
                                               "/unarchive", "/drop"))
                assert endpoint_free, (path, method, "a body-taking route without a documented body")


def test_route_validation_uses_the_documented_shape(doc):
    """The request body the document shows is the one check_body enforces (same object)."""
    create = doc["paths"]["/api/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create == REQUESTS["api.create_session"]
    with pytest.raises(Exception, match="'prompt' is required"):
        check_body("api.create_session", {"repository": "acme/api"})
    with pytest.raises(Exception, match="'line' must be a whole number"):
        check_body("api.post_comment", {"path": "a.py", "line": "2", "body": "x"})
    with pytest.raises(Exception, match="'visibility' must be one of: private, team, public"):
        check_body("api.set_visibility", {"visibility": "everyone"})


def test_a_bad_field_is_a_400_naming_it(app, db):
    alice = User.create(username="alice")
    client = schema_checked_client(app)
    r = client.post("/api/v1/sessions", json={"repository": "acme/api", "prompt": 42},
                    headers={"Authorization": f"Bearer {ApiToken.issue(alice)}"})
    assert r.status_code == 400 and r.json["error"] == "'prompt' must be a string"


def test_the_response_checker_refuses_an_undocumented_shape(app):
    """The checker every API test runs through can fail: a body missing a required field does."""
    errors = response_schema_errors(app, "GET", "/api/v1/me", 200, {"id": 1})
    assert errors and "'username' is a required property" in errors[0]
    assert response_schema_errors(app, "GET", "/api/v1/me", 418, {}) != []
    assert documented("terminal.terminal") and not documented("console_sessions.show")
