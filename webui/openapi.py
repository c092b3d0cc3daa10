"""The OpenAPI 3.0 document, built from the routes actually registered (so it cannot drift) and
the shapes in webui/schemas.py (which the routes validate with)."""

from __future__ import annotations

import re

from flask import current_app

import appliance

from .schemas import COMPONENTS, REQUESTS, RESPONSES, ref

# the blueprints (and app-level endpoints) the document covers: everything but the console's pages
DOCUMENTED_BLUEPRINTS = ("api", "me", "transcript", "terminal", "metrics", "spend", "groups", "guest_templates",
                        "environment_caches", "cluster")
DOCUMENTED_ENDPOINTS = ("healthz",)

SUMMARIES = {
    "cluster.join": "A new worker host joins with a single-use join token (no API token): it receives the shared "
                    "database URL, cluster_mode and its host id",
    "cluster.mint_join_token": "Admins: mint a single-use, expiring join token for a new worker host (shown once)",
    "cluster.image_catalog": "Worker hosts (their join credential): the current image of each profile, by hash",
    "cluster.image_blob": "Worker hosts (their join credential): a file of a built image, by its SHA-256",
    "api.list_sessions": "List the sessions the caller may see (filters: mine, status, repository; limit, offset)",
    "api.create_session": "Start a session: repository, prompt, environment, agent, base_branch, visibility, "
                          "attempts (1-4: best-of-N)",
    "api.show_session": "A session with its turns",
    "api.session_events": "Events after an id (after=N; wait=S long-polls up to 30 s)",
    "api.post_message": ("Follow up on an idle session, or steer a running one: Claude Code gets the message at "
                         "once (steered), other agents take it as the next turn (queued)"),
    "api.interrupt_session": "Stop the running turn; the guest, the branch and the session stay",
    "api.post_comment": "Comment on a line of the diff (path, line, body, side=new|old)",
    "api.list_comments": "The session's line comments, each re-anchored on a turn's diff or outdated",
    "api.send_comments": "Send the unsent comments as the next turn",
    "api.cancel_session": "Cancel: stop the agent, destroy the guest",
    "api.complete_session": "Mark an idle session done: its guest goes, branch and diff stay",
    "api.set_visibility": "Share: visibility private|team|public, hide_owner",
    "api.archive_session": "Archive: hidden from the default lists (owner and admins)",
    "api.unarchive_session": "Bring an archived session back to the lists",
    "api.delete_session": "Delete: events, turns, diffs, comments, git tokens, transcript (not while a turn runs; "
                          "the branch upstream stays)",
    "api.session_diff": "The work branch against its base: +N -M, per-file counts and patches",
    "api.create_pr": "Create a pull request on the repository's forge",
    "api.list_environments": "The caller's environments, and those shared with a team of theirs",
    "api.create_environment": "Add an environment (network level, domains, .env variables, setup, resources)",
    "api.update_environment": "Change an environment (its owner; team: share it with a team of theirs)",
    "api.delete_environment": "Delete an environment (its owner; not while a running session uses it)",
    "api.list_repositories": "Repositories the caller may use",
    "api.create_repository": "Add a repository (admins; credentials are write-only)",
    "api.delete_repository": "Remove a repository (admins; not while sessions use it: 409 names them)",
    "api.openapi": "This document",
    "me.me": "Who the token belongs to",
    "me.update_me": "Where the caller hears that a turn ended: webhook_url (http/https), email, notify_browser",
    "me.change_password": "Change the caller's password (current_password, new_password); revokes all their tokens",
    "transcript.transcript": "The agent's transcript (owner and admins; teleport), fresh from a live guest",
    "terminal.terminal": "A shell in the session's live guest over a websocket (owner and admins)",
    "metrics.metrics": "Prometheus metrics (admins' tokens, or callers on the appliance host)",
    "healthz": "Liveness",
    "groups.show_group": "Best-of-N: the attempts of one task side by side (status, diffstat, files, result)",
    "groups.pick": "Keep one attempt: the others are completed (or cancelled if still running)",
    "spend.my_usage": "The caller's model API spend this month and the budgets that apply to them",
    "spend.session_usage": "A session's metered model API usage and estimated cost (owner and admins)",
    "spend.all_spend": "Every user's and team's spend this month, with their budgets (admins)",
    "spend.set_budget": "Set a user's or team's monthly budget in USD (0: none; null: back to the default; admins)",
    "guest_templates.list_templates": "Guest templates (state, files, size, live users) and the warm pool's slots "
                                      "per profile (admins)",
    "guest_templates.drop": "Drop a guest template: no new guest starts from it; its disk goes once no sandbox "
                            "uses it (admins)",
    "environment_caches.list_caches": "Environment caches: guest disks kept after an environment's setup, that its "
                                      "next sessions start from (admins)",
    "environment_caches.drop_cache": "Drop an environment cache: the next session of its environment sets up afresh; its "
                               "files go once no guest uses them (admins)",
}

QUERY = {
    "api.list_sessions": [("mine", "boolean", "only the caller's own (1/true)"),
                          ("status", "string", "comma-separated statuses"), ("repository", "string", "name"),
                          ("archived", "string", "0: not archived (default), 1: only archived, all"),
                          ("limit", "integer", "at most 200 (default 50)"), ("offset", "integer", "")],
    "api.session_events": [("after", "integer", "event id (default 0)"),
                           ("wait", "number", "seconds to long-poll for new events (at most 30)")],
    "api.list_comments": [("turn", "integer", "place the comments on this turn's diff (default: the newest)")],
}

TERMINAL_DESCRIPTION = (
    "Upgrade to a websocket. Binary frames carry terminal bytes both ways; text frames are JSON control "
    "messages: client → {\"resize\": [cols, rows]} (send it first); server → {\"error\": …, \"hint\": …} "
    "or {\"exit\": code} at the end.")

ERRORS = {
    400: "a field is missing or wrong (the error names it)",
    401: "no or bad token",
    403: "the caller may see it but not do this",
    404: "no such object, or not the caller's to see",
}
NO_TOKEN_NEEDED = ("api.openapi", "healthz", "metrics.metrics")


def documented(endpoint: str) -> bool:
    return endpoint in DOCUMENTED_ENDPOINTS or endpoint.split(".", 1)[0] in DOCUMENTED_BLUEPRINTS


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _operation(endpoint: str, method: str, path: str) -> dict:
    name = endpoint.split(".", 1)[-1]
    op: dict = {
        "operationId": name + ("" if method in ("GET", "POST") else f"_{method.lower()}"),
        "summary": SUMMARIES[endpoint],
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in re.findall(r"{([a-z_]+)}", path)]
                      + [{"name": q, "in": "query", "required": False, "schema": {"type": t}, "description": d}
                         for q, t, d in QUERY.get(endpoint, [])],
    }
    body = REQUESTS.get(endpoint)
    if body is not None and method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {"required": True, **_json(body)}
    responses: dict = {}
    if endpoint == "terminal.terminal":
        responses["101"] = {"description": TERMINAL_DESCRIPTION}
    elif endpoint == "cluster.image_blob":
        responses["200"] = {"description": "the file's bytes (check them against the hash asked for)",
                            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                "format": "binary"}}}}
    elif endpoint == "metrics.metrics":
        responses["200"] = {"description": "Prometheus text format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}}}
        responses["403"] = {"description": "not an admin, and not a caller on this host", **_json(ref("Error"))}
    for status, component in RESPONSES.get(endpoint, {}).items():
        responses[str(status)] = {"description": component, **_json(ref(component))}
    if endpoint in ("cluster.image_catalog", "cluster.image_blob"):  # the host's credential as a bearer token
        op["security"] = [{"bearer": []}]
        for status, why in ((401, "no host credential, or not a valid one"), (404, "no image file with this hash")):
            responses.setdefault(str(status), {"description": why, **_json(ref("Error"))})
    elif endpoint == "cluster.join":  # the join token in the body is its credential
        for status, why in ((400, ERRORS[400]), (401, "no join token, or not a valid one"),
                            (403, "the join token expired or was used already")):
            responses.setdefault(str(status), {"description": why, **_json(ref("Error"))})
    elif endpoint not in NO_TOKEN_NEEDED:
        op["security"] = [{"bearer": []}]
        for status, why in ERRORS.items():
            responses.setdefault(str(status), {"description": why, **_json(ref("Error"))})
    op["responses"] = responses
    return op


def document() -> dict:
    paths: dict = {}
    for rule in current_app.url_map.iter_rules():
        if not documented(rule.endpoint):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule.endpoint, method, path)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Appliance API", "version": appliance.__version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": COMPONENTS},
        "paths": dict(sorted(paths.items())),
    }
