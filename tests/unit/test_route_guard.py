"""Every route refuses an anonymous caller, except the few that are public on purpose.

A new route that forgets its guard (API token, console sign-in + CSRF) fails here; a route that is
meant to be reached without either must be added to PUBLIC with the reason.
"""

from __future__ import annotations

import re

from appliance.services import Services
from webui import create_app

PUBLIC = {
    "healthz": "liveness only",
    "api.openapi": "the API's description",
    "metrics.metrics": "guarded by its own check: admins, or callers on this host",
    "console_auth.login": "the sign-in page",
    "console_assets.vendor": "static files",
    "static": "static files",
    # forges cannot sign in: each delivery proves itself with the repository's webhook secret
    # (tests/unit/test_prloop_webhooks.py: unsigned and wrongly signed deliveries are 401)
    "forge_hooks.delivery": "signed by the forge",
    # a new worker host has no account: it proves itself with a single-use join token in the body
    # (tests/unit/test_cluster_join.py: missing, wrong, expired and used tokens are 401/403)
    "cluster.join": "a host joining with its join token",
}


def refused(response) -> bool:
    if response.status_code in (401, 404):
        return True
    if response.status_code == 302:
        return response.headers["Location"].startswith("/login")
    # console forms: an anonymous caller has no CSRF token, so the check refuses before the route runs
    return response.status_code == 400 and "CSRF" in response.get_data(as_text=True)


def test_every_route_but_the_public_ones_refuses_an_anonymous_caller(db, cfg):
    app = create_app(Services.build(cfg), {"TESTING": True})
    client = app.test_client()
    seen, open_routes = set(), []
    for rule in app.url_map.iter_rules():
        if rule.websocket:
            continue
        seen.add(rule.endpoint)
        if rule.endpoint in PUBLIC:
            continue
        url = re.sub(r"<(?:[a-z]+:)?[a-z_]+>", lambda m: "1" if m.group(0).startswith("<int:") else "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            if not refused(response):
                open_routes.append(f"{method} {url} ({rule.endpoint}) -> {response.status_code}")
    assert open_routes == []
    assert set(PUBLIC) <= seen, "an allowed route that no longer exists: remove it from PUBLIC"


def test_the_check_catches_an_unguarded_route(db, cfg):
    app = create_app(Services.build(cfg), {"TESTING": True})
    app.add_url_rule("/oops", "oops", lambda: "secret data")
    assert not refused(app.test_client().get("/oops"))
