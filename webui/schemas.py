"""The API's shapes, in one place: the routes validate request bodies with them, and the OpenAPI
document (webui/openapi.py) publishes them. Plain OpenAPI 3.0 schema dicts; `check_body` knows the
small part of JSON Schema the request bodies use (object, properties, required, type, enum,
oneOf of types, nullable) and names the field it refuses.
"""

from __future__ import annotations

from appliance.errors import Invalid
from appliance.sessions.models import AGENTS, VISIBILITIES, Status, TurnStatus


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NULL_STR = {"type": "string", "nullable": True}
NULL_INT = {"type": "integer", "nullable": True}
NUM = {"type": "number"}
NULL_NUM = {"type": "number", "nullable": True}
TIME = {"type": "string", "format": "date-time", "nullable": True}
NAME_OR_ID = {"oneOf": [STR, INT]}


def obj(properties: dict, required: list[str] | None = None, *, closed: bool = False) -> dict:
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def listing(key: str, item: str) -> dict:
    return obj({key: {"type": "array", "items": ref(item)}}, [key])


SESSION = obj({
    "id": STR, "title": STR, "status": {"type": "string", "enum": list(Status.ALL)}, "status_detail": STR,
    "repository": STR, "base_branch": STR, "work_branch": STR, "environment": NULL_STR,
    "agent": {"type": "string", "enum": list(AGENTS)}, "visibility": {"type": "string", "enum": list(VISIBILITIES)},
    "owner": {"type": "string", "nullable": True, "description": "null when the owner hid their name"},
    "diff": obj({"added": INT, "removed": INT}, ["added", "removed"]),
    "pr_url": NULL_STR, "pr_number": NULL_INT,
    "pr_state": {"type": "string", "enum": ["", "open", "merged", "closed"]},
    "pr_checks": {"type": "string", "enum": ["", "passing", "failing", "pending"]}, "autofix": BOOL,
    "error": NULL_STR, "created_at": TIME, "updated_at": TIME, "finished_at": TIME,
    "group_id": {**NULL_STR, "description": "best-of-N: the group of attempts this session is one of"},
    "attempt": {**NULL_INT, "description": "its number in the group (1..4)"},
    "archived_at": {**TIME, "description": "set: hidden from the default lists"},
}, ["id", "title", "status", "repository", "base_branch", "work_branch", "agent", "visibility", "diff"])

COMPONENTS: dict[str, dict] = {
    "Error": obj({"error": STR, "hint": STR}, ["error"]),
    # joining a worker host (appliance/cluster/join.py)
    "JoinGrant": obj({"host_id": STR, "database_url": {**STR, "description": "the shared PostgreSQL"},
                      "cluster_mode": {**STR, "enum": ["on"]},
                      "host_credential": {**STR, "description": "this host's own, for control's images"}},
                     ["host_id", "database_url", "cluster_mode", "host_credential"]),
    "ImageCatalog": obj({"images": {"type": "array", "items": obj(
        {"profile": STR, "profile_hash": STR, "manifest": {**STR, "description": "SHA-256 of manifest.json"},
         "files": {"type": "object", "description": "file name -> {size, sha256}"}},
        ["profile", "profile_hash", "manifest", "files"])}}, ["images"]),
    "JoinToken": obj({"token": {**STR, "description": "shown once; single use"}, "expires_at": STR,
                      "command": {**STR, "description": "what to run on the new host"}},
                     ["token", "expires_at", "command"]),
    "Session": SESSION,
    "SessionList": listing("sessions", "Session"),
    "CreatedSession": {"allOf": [ref("Session"), obj({"group": {**obj({"id": STR, "sessions": {
        "type": "array", "items": STR}}, ["id", "sessions"]), "nullable": True,
        "description": "with attempts > 1: the group and every attempt's session id"}})]},
    "Attempt": {"allOf": [ref("Session"), obj({"files": {"type": "array", "items": obj(
        {"path": STR, "change": STR, "added": INT, "removed": INT}, ["path", "change", "added", "removed"])},
        "result": {**NULL_STR, "description": "the agent's last turn result, if it reported one"}}, ["files"])]},
    "AttemptGroup": obj({"id": STR, "picked": {**NULL_STR, "description": "the session kept, once one was picked"},
                         "attempts": {"type": "array", "items": ref("Attempt")}}, ["id", "attempts"]),
    "Turn": obj({"number": INT, "message": STR, "source": STR,
                 "status": {"type": "string", "enum": list(TurnStatus.ALL)}, "commit": NULL_STR, "error": NULL_STR,
                 "timings": {"type": "object", "additionalProperties": {"type": "number"}}},
                ["number", "message", "source", "status"]),
    "SessionWithTurns": {"allOf": [ref("Session"), obj({"turns": {"type": "array", "items": ref("Turn")}},
                                                      ["turns"])]},
    "Event": obj({"id": INT, "turn": NULL_INT, "kind": STR, "data": {"type": "object"}, "at": STR},
                 ["id", "kind", "data", "at"]),
    "Events": obj({"events": {"type": "array", "items": ref("Event")},
                   "status": {"type": "string", "enum": list(Status.ALL)}}, ["events", "status"]),
    "QueuedTurn": obj({"turn": INT, "queued": BOOL}, ["turn", "queued"]),
    "DeliveredMessage": obj({"turn": INT, "queued": BOOL, "steered": BOOL}, ["turn", "queued", "steered"]),
    "Interrupting": obj({"turn": INT, "interrupting": BOOL}, ["turn", "interrupting"]),
    "Comment": obj({"id": INT, "path": STR, "line": INT, "side": {"type": "string", "enum": ["new", "old"]},
                    "body": STR, "turn": {**NULL_INT, "description": "the turn whose diff it was written on"},
                    "line_text": {**STR, "description": "the line's text there"},
                    "sent_in_turn": NULL_INT,
                    "anchor": {**obj({"turn": INT, "line": NULL_INT,
                                      "state": {"type": "string", "enum": ["current", "moved", "outdated"]}},
                                     ["turn", "line", "state"]), "nullable": True,
                               "description": "where it sits on the listed turn's diff (null: written later)"}},
                   ["id", "path", "line", "side", "body"]),
    "CommentList": obj({"turn": INT, "comments": {"type": "array", "items": ref("Comment")}}, ["comments"]),
    "DiffFile": obj({"path": STR, "old_path": NULL_STR, "change": STR, "added": INT, "removed": INT,
                     "binary": BOOL, "patch": STR}, ["path", "change", "added", "removed"]),
    "Diff": obj({"base_branch": STR, "work_branch": STR, "base_sha": NULL_STR, "head_sha": NULL_STR,
                 "added": INT, "removed": INT, "files": {"type": "array", "items": ref("DiffFile")}},
                ["base_branch", "work_branch", "added", "removed", "files"]),
    "PullRequest": obj({"url": STR, "number": INT, "existing": BOOL}, ["url"]),
    "Environment": obj({"id": INT, "name": STR, "network_level": STR, "domains": {"type": "array", "items": STR},
                        "include_defaults": BOOL, "variables": STR, "setup_script": STR, "profile": STR,
                        "vcpus": NULL_INT, "memory_mb": NULL_INT, "disk_gb": NULL_INT, "is_default": BOOL,
                        "owner": STR, "team": {**NULL_STR, "description": "the team it is shared with"}},
                       ["id", "name", "network_level"]),
    "EnvironmentList": listing("environments", "Environment"),
    "Repository": obj({"id": INT, "name": STR, "url": STR, "default_branch": STR, "forge": NULL_STR,
                       "forge_project": NULL_STR, "credential": STR}, ["id", "name", "url", "default_branch"]),
    "RepositoryList": listing("repositories", "Repository"),
    "Spend": obj({"input_tokens": INT, "output_tokens": INT, "cache_read_tokens": INT, "cache_write_tokens": INT,
                  "cost_usd": NUM}, ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                                     "cost_usd"]),
    "SessionUsage": {"allOf": [ref("Spend"), obj({"session": STR}, ["session"])]},
    "BudgetStatus": obj({"scope": {"type": "string", "enum": ["user", "team"]}, "name": STR, "used_usd": NUM,
                         "budget_usd": NULL_NUM, "exceeded": BOOL}, ["scope", "name", "used_usd", "exceeded"]),
    "MyUsage": obj({"month": STR, "spend": ref("Spend"),
                    "budgets": {"type": "array", "items": ref("BudgetStatus")}}, ["month", "spend", "budgets"]),
    "SpendRow": {"allOf": [ref("Spend"), obj({"name": STR, "budget_usd": NULL_NUM}, ["name"])]},
    "AllSpend": obj({"month": STR, "users": {"type": "array", "items": ref("SpendRow")},
                     "teams": {"type": "array", "items": ref("SpendRow")}}, ["month", "users", "teams"]),
    "Me": obj({"id": INT, "username": STR, "display_name": NULL_STR, "is_admin": BOOL, "webhook_url": NULL_STR,
               "email": NULL_STR, "notify_browser": BOOL}, ["id", "username", "is_admin"]),
    "Deleted": obj({"deleted": {"oneOf": [STR, INT]}}, ["deleted"]),
    "PasswordChanged": obj({"changed": BOOL, "tokens_revoked": BOOL, "hint": STR}, ["changed"]),
    "Transcript": obj({"session": STR, "agent": STR, "agent_session_id": NULL_STR, "transcript": STR},
                      ["session", "agent", "transcript"]),
    "GuestTemplate": obj({
        "key": STR, "host": {**STR, "description": "the worker host holding it; empty on one server"}, "profile": STR,
        "image_hash": STR, "domain_type": STR, "vcpus": INT, "memory_mb": INT, "disk_gb": INT, "qemu_version": STR,
        "state": {"type": "string", "enum": ["building", "ready", "failed", "dropped"]},
        "created_at": TIME, "made_at": TIME, "build_seconds": NULL_NUM, "error": NULL_STR,
        "files": {"type": "boolean", "nullable": True, "description": "its files are on this host (null: another)"},
        "bytes_on_disk": INT, "users": {**INT, "description": "live sandboxes cloned from it"}},
        ["key", "profile", "state", "files", "bytes_on_disk", "users"]),
    "PoolProfile": obj({"profile": STR, "target": INT, "slots": INT, "waiting": INT, "starting": INT, "retiring": INT},
                       ["profile", "target", "slots", "waiting", "starting", "retiring"]),
    "GuestTemplates": obj({"templates": {"type": "array", "items": ref("GuestTemplate")},
                           "pool": obj({"enabled": BOOL, "target": INT,
                                        "profiles": {"type": "array", "items": ref("PoolProfile")}},
                                       ["enabled", "target", "profiles"])}, ["templates", "pool"]),
    "DroppedTemplate": obj({"template": ref("GuestTemplate")}, ["template"]),
    "EnvironmentCache": obj({
        "id": INT, "environment": STR, "owner": STR, "repository": STR,
        "state": {"type": "string", "enum": ["building", "ready", "failed", "dropped"]},
        "created_at": STR, "last_used_at": NULL_STR, "uses": INT, "size_bytes": {**INT, "nullable": True},
        "base_sha": NULL_STR, "host": {**STR, "description": "the worker host holding it; empty on one server"},
        "error": NULL_STR}, ["id", "environment", "owner", "repository", "state", "uses"]),
    "EnvironmentCaches": obj({"caches": {"type": "array", "items": ref("EnvironmentCache")}}, ["caches"]),
    "DroppedEnvironmentCache": obj({"cache": ref("EnvironmentCache")}, ["cache"]),
    "Health": obj({"status": STR, "version": STR}, ["status", "version"]),
    "OpenAPI": {"type": "object", "description": "this document"},
}

ENVIRONMENT_FIELDS = {
    "name": STR, "network_level": {"type": "string", "enum": ["none", "limited", "custom", "full"]},
    "domains": {"oneOf": [{"type": "array", "items": STR}, STR], "description": "a list, or one per line"},
    "include_defaults": BOOL, "variables": {"type": "string", "description": ".env format"}, "setup_script": STR,
    "profile": STR, "vcpus": NULL_INT, "memory_mb": NULL_INT, "disk_gb": NULL_INT, "is_default": BOOL,
    "team": {**NULL_STR, "description": "share with this team of yours (its members may use it); empty: nobody"},
}

# request bodies, by endpoint
REQUESTS: dict[str, dict] = {
    # no field is required by the schema: a missing token is a 401 of the join itself
    "cluster.join": obj({"token": STR, "host_id": STR}),
    "cluster.mint_join_token": obj({"ttl_minutes": {**INT, "description": "1 to 10080 (default 60)"}}),
    "api.create_session": obj({
        "repository": {**NAME_OR_ID, "description": "name or id"}, "prompt": STR,
        "environment": {**NAME_OR_ID, "nullable": True, "description": "name or id; default: yours"},
        "agent": {"type": "string", "enum": list(AGENTS), "nullable": True},
        "base_branch": NULL_STR, "visibility": {"type": "string", "enum": list(VISIBILITIES), "nullable": True},
        "command": {"type": "string", "nullable": True, "description": "agent 'command': what to run"},
        "attempts": {**NULL_INT, "description": "best-of-N: 1 (default) to 4 sessions of the same task, grouped"},
    }, ["repository", "prompt"]),
    "api.post_message": obj({"text": STR}, ["text"]),
    "api.post_comment": obj({"path": STR, "line": INT, "body": STR,
                             "side": {"type": "string", "enum": ["new", "old"], "nullable": True},
                             "turn": {**NULL_INT, "description": "the turn whose diff it is on (default: the newest)"}},
                            ["path", "line", "body"]),
    "api.set_visibility": obj({"visibility": {"type": "string", "enum": list(VISIBILITIES)},
                               "hide_owner": {"type": "boolean", "nullable": True}}, ["visibility"]),
    "api.create_environment": obj(ENVIRONMENT_FIELDS, ["name"]),
    "api.update_environment": obj(ENVIRONMENT_FIELDS),
    "api.create_repository": obj({"name": STR, "url": STR, "default_branch": NULL_STR, "forge": NULL_STR,
                                  "forge_api_url": NULL_STR, "forge_project": NULL_STR, "credential_kind": NULL_STR,
                                  "credential_secret": {"type": "string", "nullable": True, "writeOnly": True},
                                  "credential_username": NULL_STR, "team": NULL_STR}, ["name", "url"]),
    "me.update_me": obj({"webhook_url": NULL_STR, "email": NULL_STR, "notify_browser": BOOL}),
    "me.change_password": obj({"current_password": {"type": "string", "writeOnly": True},
                               "new_password": {"type": "string", "writeOnly": True}},
                              ["current_password", "new_password"]),
    "groups.pick": obj({"session": {**STR, "description": "the attempt to keep"}}, ["session"]),
    "spend.set_budget": obj({"scope": {"type": "string", "enum": ["user", "team"]}, "name": STR,
                             "monthly_usd": {**NULL_NUM, "description": "USD a month; 0: none; null: the default"}},
                            ["scope", "name"]),
    "api.archive_session": None, "api.unarchive_session": None, "api.delete_session": None,
    "api.cancel_session": None, "api.interrupt_session": None, "api.complete_session": None,
    "api.send_comments": None, "guest_templates.drop": None, "environment_caches.drop_cache": None,
    "api.create_pr": obj({"title": NULL_STR, "body": NULL_STR, "autofix": {"type": "boolean", "nullable": True}}),
}

# responses, by endpoint: {status: component name}; errors are added by the document for every route
RESPONSES: dict[str, dict[int, str]] = {
    "api.list_sessions": {200: "SessionList"},
    "api.create_session": {201: "CreatedSession"},
    "api.show_session": {200: "SessionWithTurns"},
    "api.session_events": {200: "Events"},
    "api.post_message": {202: "DeliveredMessage"},
    "api.interrupt_session": {202: "Interrupting"},
    "api.post_comment": {201: "Comment"},
    "api.list_comments": {200: "CommentList"},
    "api.send_comments": {202: "QueuedTurn"},
    "api.cancel_session": {200: "Session"},
    "api.complete_session": {200: "Session"},
    "api.set_visibility": {200: "Session"},
    "api.archive_session": {200: "Session"},
    "api.unarchive_session": {200: "Session"},
    "api.delete_session": {200: "Deleted", 409: "Error"},
    "api.session_diff": {200: "Diff"},
    "api.create_pr": {201: "PullRequest"},
    "api.list_environments": {200: "EnvironmentList"},
    "api.create_environment": {201: "Environment"},
    "api.update_environment": {200: "Environment"},
    "api.delete_environment": {200: "Deleted", 409: "Error"},
    "api.list_repositories": {200: "RepositoryList"},
    "api.create_repository": {201: "Repository"},
    "api.delete_repository": {200: "Deleted", 409: "Error"},
    "api.openapi": {200: "OpenAPI"},
    "me.me": {200: "Me"},
    "me.update_me": {200: "Me"},
    "me.change_password": {200: "PasswordChanged"},
    "transcript.transcript": {200: "Transcript"},
    "healthz": {200: "Health"},
    "groups.show_group": {200: "AttemptGroup"},
    "cluster.join": {200: "JoinGrant", 409: "Error", 429: "Error"},
    "cluster.mint_join_token": {201: "JoinToken", 409: "Error"},
    "cluster.image_catalog": {200: "ImageCatalog"},
    "groups.pick": {200: "AttemptGroup"},
    "spend.my_usage": {200: "MyUsage"},
    "spend.session_usage": {200: "SessionUsage"},
    "spend.all_spend": {200: "AllSpend"},
    "spend.set_budget": {200: "AllSpend"},
    "guest_templates.list_templates": {200: "GuestTemplates"},
    "guest_templates.drop": {200: "DroppedTemplate"},
    "environment_caches.list_caches": {200: "EnvironmentCaches"},
    "environment_caches.drop_cache": {200: "DroppedEnvironmentCache"},
}

_TYPES = {"string": (str,), "integer": (int,), "boolean": (bool,), "number": (int, float), "object": (dict,),
          "array": (list,)}
_ARTICLE = {"string": "a string", "integer": "a whole number", "boolean": "true or false", "number": "a number",
            "object": "an object", "array": "a list"}


def _type_ok(value, schema: dict) -> bool:
    if "oneOf" in schema:
        return any(_type_ok(value, s) for s in schema["oneOf"])
    kind = schema.get("type")
    if kind is None:
        return True
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[kind])


def _expected(schema: dict) -> str:
    if "oneOf" in schema:
        return " or ".join(_expected(s) for s in schema["oneOf"])
    return _ARTICLE.get(schema.get("type", ""), "a value")


def check_body(endpoint: str, data) -> dict:
    """The request body of `endpoint`, checked against its schema; Invalid names the first bad field."""
    schema = REQUESTS[endpoint]
    if not isinstance(data, dict):
        raise Invalid("the request body must be a JSON object")
    for name in schema.get("required", []):
        if data.get(name) is None:
            raise Invalid(f"'{name}' is required")
    for name, prop in schema["properties"].items():
        value = data.get(name)
        if value is None:
            continue
        if not _type_ok(value, prop):
            raise Invalid(f"'{name}' must be {_expected(prop)}")
        if "enum" in prop and value not in prop["enum"]:
            raise Invalid(f"'{name}' must be one of: {', '.join(map(str, prop['enum']))}")
    return data
