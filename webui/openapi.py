"""The OpenAPI document, built from the routes actually registered (so it cannot drift)."""

from __future__ import annotations

import re

from flask import current_app

import appliance

SUMMARIES = {
    "api.list_sessions": "List the sessions the caller may see (filters: mine, status, repository; limit, offset)",
    "api.create_session": "Start a session: repository, prompt, environment, agent, base_branch, visibility",
    "api.show_session": "A session with its turns",
    "api.session_events": "Events after an id (after=N; wait=S long-polls up to 30 s)",
    "api.post_message": "Follow up on an idle session, or steer a running one (queued as the next turn)",
    "api.post_comment": "Comment on a line of the diff (path, line, body, side=new|old)",
    "api.list_comments": "The session's line comments",
    "api.send_comments": "Send the unsent comments as the next turn",
    "api.cancel_session": "Cancel: stop the agent, destroy the guest",
    "api.complete_session": "Mark an idle session done: its guest goes, branch and diff stay",
    "api.set_visibility": "Share: visibility private|team|public, hide_owner",
    "api.session_diff": "The work branch against its base: +N -M, per-file counts and patches",
    "api.create_pr": "Create a pull request on the repository's forge",
    "api.list_environments": "The caller's environments",
    "api.create_environment": "Add an environment (network level, domains, .env variables, setup, resources)",
    "api.update_environment": "Change an environment",
    "api.list_repositories": "Repositories the caller may use",
    "api.create_repository": "Add a repository (admins; credentials are write-only)",
    "api.openapi": "This document",
}


def document() -> dict:
    paths: dict = {}
    for rule in current_app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in re.findall(r"{([a-z_]+)}", path)]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            op = {"operationId": rule.endpoint.split(".", 1)[1] + ("" if method in ("GET", "POST") else f"_{method.lower()}"),
                  "summary": SUMMARIES.get(rule.endpoint, ""), "parameters": params,
                  "responses": {"200": {"description": "OK"}, "401": {"description": "no or bad token"},
                                "404": {"description": "no such object, or not the caller's to see"}}}
            if rule.endpoint != "api.openapi":
                op["security"] = [{"bearer": []}]
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "Appliance API", "version": appliance.__version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": dict(sorted(paths.items())),
    }
