"""The REST API (JSON, per-user bearer tokens). Every route resolves the caller first; objects the
caller may not see are 404, exactly like objects that do not exist."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from appliance.environments import access as environment_access
from appliance.environments.access import usable as usable_environments
from appliance.environments.models import Environment
from appliance.errors import ApplianceError, Conflict, Forbidden, Invalid, NotFound
from appliance.repos.models import Repository
from appliance.sessions import anchors, answers, attempts, removal
from appliance.sessions.access import may_use_repository, session_for, visible_sessions
from appliance.sessions.models import Comment, DiffFile, Session, Turn, TurnStatus
from appliance.sessions.service import NewSession
from appliance.sessions.stream import wait_for_events

from .app import services
from .auth import current_user
from .limits import guest_limits, model_choice
from .params import query_float, query_int
from .schemas import check_body
from .serialize import environment_dict, session_dict

api = Blueprint("api", __name__, url_prefix="/api/v1")

STATUS_FOR = {NotFound: 404, Forbidden: 403, Conflict: 409, Invalid: 400}  # subclasses first


class Unauthorized(ApplianceError):
    pass


@api.errorhandler(ApplianceError)
def appliance_error(e: ApplianceError):
    status = 401 if isinstance(e, Unauthorized) else next(
        (code for cls, code in STATUS_FOR.items() if isinstance(e, cls)), 400)
    body = {"error": e.message}
    if e.hint:
        body["hint"] = e.hint
    return jsonify(body), status


def require_token():
    """Every API blueprint's before_request: a caller with a valid bearer token, or 401."""
    if current_user() is None:
        raise Unauthorized("authentication required", hint="send 'Authorization: Bearer <token>' (appliance login)")


@api.before_request
def _require_user():
    if request.endpoint == "api.openapi":
        return None
    require_token()
    return None


def json_body() -> dict:
    """The request's JSON object, checked against the endpoint's schema (webui/schemas.py)."""
    return check_body(request.endpoint, request.get_json(silent=True))


def _sessions():
    return services().sessions


# --- sessions ---------------------------------------------------------------------------------

@api.get("/sessions")
def list_sessions():
    user = current_user()
    query = visible_sessions(user)
    if request.args.get("mine") in ("1", "true"):
        query = query.where(Session.owner == user)
    if request.args.get("status"):
        query = query.where(Session.status.in_(request.args["status"].split(",")))
    if request.args.get("repository"):
        query = query.where(Repository.name == request.args["repository"])  # joined by visible_sessions
    archived = request.args.get("archived", "0")  # 0: not archived (default), 1: only archived, all: both
    if archived in ("1", "true"):
        query = query.where(Session.archived_at.is_null(False))
    elif archived != "all":
        query = query.where(Session.archived_at.is_null())
    limit = min(query_int("limit", 50), 200)  # more than 200 is served as 200
    offset = query_int("offset", 0)
    rows = query.order_by(Session.created_at.desc(), Session.id.desc()).limit(limit).offset(offset)
    return jsonify({"sessions": [session_dict(s, user) for s in rows]})


@api.post("/sessions")
def create_session():
    data = json_body()
    req = NewSession(
        repository=data["repository"], prompt=data["prompt"], environment=data.get("environment"),
        agent=data.get("agent") or "claude-code", base_branch=data.get("base_branch"),
        visibility=data.get("visibility") or "private", command=data.get("command"),
        model=data.get("model"),
    )
    created = attempts.create(_sessions(), current_user(), req, data.get("attempts") or 1)
    body = session_dict(created[0], current_user())  # the first attempt; the others are in `group`
    body["group"] = ({"id": created[0].group_id, "sessions": [s.id for s in created]}
                     if created[0].group_id else None)
    return jsonify(body), 201


@api.get("/sessions/<session_id>")
def show_session(session_id):
    user = current_user()
    session = session_for(user, session_id)
    body = session_dict(session, user)
    answered = answers.answer_only_turns(session)
    body["turns"] = [{"number": t.number, "message": t.message, "source": t.source, "status": t.status,
                      "commit": t.commit_sha, "error": t.error, "timings": t.timings,
                      "answer_only": t.number in answered}
                     for t in session.turns_in_order()]
    blocker = answers.pull_request_blocker(session)  # why "Create PR" is refused now, if it is
    body["pr_blocked"] = {"reason": blocker.reason, "hint": blocker.hint} if blocker else None
    return jsonify(body)


@api.get("/sessions/<session_id>/events")
def session_events(session_id):
    session = session_for(current_user(), session_id)
    after = query_int("after", 0)
    wait = min(query_float("wait", 0.0, high=3600.0), 30.0)  # long-polls are served at most 30 s
    events = wait_for_events(session.id, after, wait)
    return jsonify({"events": [e.to_dict() for e in events], "status": Session.get_by_id(session.id).status})


@api.post("/sessions/<session_id>/messages")
def post_message(session_id):
    turn = _sessions().message(current_user(), session_id, json_body()["text"])
    steered = turn.status == TurnStatus.RUNNING  # the running agent has it; else it waits as a turn
    return jsonify({"turn": turn.number, "queued": not steered, "steered": steered}), 202


@api.post("/sessions/<session_id>/interrupt")
def interrupt_session(session_id):
    turn = _sessions().interrupt(current_user(), session_id)
    return jsonify({"turn": turn.number, "interrupting": True}), 202


@api.post("/sessions/<session_id>/comments")
def post_comment(session_id):
    data = json_body()
    c = _sessions().comment(current_user(), session_id, data["path"], data["line"], data["body"],
                            data.get("side") or "new", turn=data.get("turn"))
    return jsonify(_comment_dict(c)), 201


@api.get("/sessions/<session_id>/comments")
def list_comments(session_id):
    """Each comment with where it sits on the diff of `turn` (default: the newest diff): its line
    there, re-anchored by the line's text, or outdated; `anchor` is null on turns older than it."""
    session = session_for(current_user(), session_id)
    files = DiffFile.select(DiffFile, Turn.number).join(Turn).where(DiffFile.session == session)
    newest = files.order_by(Turn.number.desc()).first()
    shown = query_int("turn", newest.turn.number if newest else 0, low=0, high=10 ** 6)
    patches = {f.path: f.patch for f in files.where(Turn.number == shown)}
    comments = []
    for c in Comment.select().where(Comment.session == session).order_by(Comment.id):
        where = anchors.place(c.turn_number, c.line_text, c.line, c.side, shown, patches.get(c.path))
        comments.append({**_comment_dict(c), "anchor": where and {"turn": shown, "line": where.line,
                                                                  "state": where.state}})
    return jsonify({"turn": shown, "comments": comments})


def _comment_dict(c: Comment) -> dict:
    return {"id": c.id, "path": c.path, "line": c.line, "side": c.side, "body": c.body,
            "turn": c.turn_number, "line_text": c.line_text,
            "sent_in_turn": c.sent_in.number if c.sent_in_id else None}


@api.post("/sessions/<session_id>/comments/send")
def send_comments(session_id):
    turn = _sessions().send_comments(current_user(), session_id)
    return jsonify({"turn": turn.number, "queued": True}), 202


@api.post("/sessions/<session_id>/cancel")
def cancel_session(session_id):
    session = _sessions().cancel(current_user(), session_id)
    return jsonify(session_dict(session, current_user()))


@api.post("/sessions/<session_id>/complete")
def complete_session(session_id):
    session = _sessions().complete(current_user(), session_id)
    return jsonify(session_dict(session, current_user()))


@api.post("/sessions/<session_id>/archive")
def archive_session(session_id):
    return jsonify(session_dict(removal.set_archived(current_user(), session_id, True), current_user()))


@api.post("/sessions/<session_id>/unarchive")
def unarchive_session(session_id):
    return jsonify(session_dict(removal.set_archived(current_user(), session_id, False), current_user()))


@api.delete("/sessions/<session_id>")
def delete_session(session_id):
    deleted = removal.delete(current_user(), session_id, services().config.state_dir, _sessions().sandboxes)
    return jsonify({"deleted": deleted})


@api.post("/sessions/<session_id>/visibility")
def set_visibility(session_id):
    data = json_body()
    session = _sessions().set_visibility(current_user(), session_id, data["visibility"], data.get("hide_owner"))
    return jsonify(session_dict(session, current_user()))


@api.get("/sessions/<session_id>/diff")
def session_diff(session_id):
    session = session_for(current_user(), session_id)
    files = session.latest_diff_files()
    return jsonify({"base_branch": session.base_branch, "work_branch": session.work_branch,
                    "base_sha": session.base_sha, "head_sha": session.head_sha,
                    "added": session.diff_added, "removed": session.diff_removed,
                    "files": [{"path": f.path, "old_path": f.old_path, "change": f.change, "added": f.added,
                               "removed": f.removed, "binary": f.binary, "patch": f.patch} for f in files]})


@api.post("/sessions/<session_id>/pr")
def create_pr(session_id):
    data = check_body(request.endpoint, request.get_json(silent=True) or {})
    pr = _sessions().create_pull_request(current_user(), session_id, title=data.get("title"), body=data.get("body"),
                                         autofix=data.get("autofix"))
    return jsonify(pr), 201


# --- environments and repositories ---------------------------------------------------------------

@api.get("/environments")
def list_environments():
    envs = usable_environments(current_user()).order_by(Environment.name)  # theirs, and their teams' shared ones
    return jsonify({"environments": [environment_dict(e) for e in envs]})


@api.post("/environments")
def create_environment():
    from appliance.environments.service import save_environment

    env = save_environment(current_user(), None, json_body(), limits=guest_limits(), models=model_choice())
    return jsonify(environment_dict(env)), 201


@api.route("/environments/<int:env_id>", methods=["PUT", "PATCH"])
def update_environment(env_id):
    from appliance.environments.service import save_environment

    env = environment_access.owned(current_user(), env_id)
    return jsonify(environment_dict(save_environment(current_user(), env, json_body(), limits=guest_limits(),
                                                        models=model_choice())))


@api.delete("/environments/<int:env_id>")
def delete_environment(env_id):
    return jsonify({"deleted": removal.delete_environment(current_user(), env_id)})


@api.get("/repositories")
def list_repositories():
    user = current_user()
    repos = [r for r in Repository.select().order_by(Repository.name) if may_use_repository(user, r)]
    return jsonify({"repositories": [r.public_dict() for r in repos]})


@api.post("/repositories")
def create_repository():
    from appliance.repos.service import save_repository

    user = current_user()
    if not user.is_admin:
        raise Forbidden("only admins add repositories", hint="ask an admin")
    repo = save_repository(user, json_body())
    return jsonify(repo.public_dict()), 201


@api.delete("/repositories/<int:repo_id>")
def delete_repository(repo_id):
    if not current_user().is_admin:
        raise Forbidden("only admins remove repositories", hint="ask an admin")
    return jsonify({"deleted": removal.remove_repository(repo_id).name})


@api.get("/openapi.json")
def openapi():
    from .openapi import document

    return jsonify(document())
