"""Sessions: the list, a new session, the session page, its diff with line comments, sharing, the
egress log and the terminal page. Reads go through `session_for` (404 for what the viewer may not
see); changes go through the SessionService, which checks the owner again."""

from __future__ import annotations

import json
import re

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from appliance.environments.access import usable as usable_environments
from appliance.environments.models import Environment
from appliance.errors import Invalid
from appliance.prloop.models import pr_details
from appliance.repos.models import Repository
from appliance.sessions import anchors, answers, attempts, pr_text, removal
from appliance.sessions.access import (
    may_change,
    may_use_repository,
    name_in_session,
    session_for,
    shows_owner,
    visible_sessions,
)
from appliance.sessions.models import AGENTS, VISIBILITIES, Comment, DiffFile, Event, Session, Status, Turn
from appliance.sessions.service import NewSession
from appliance.sessions.spend import report

from ..app import services
from ..limits import model_choice
from ..params import query_int
from . import conversation, require_user, sessions_service

bp = Blueprint("console_sessions", __name__)

PAGE_SIZE = 25
EVENTS_PAGE = 500  # events on the session page, and per "Load earlier events"
STATUSES = Status.ALL
HUNK = re.compile(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)")


# --- helpers --------------------------------------------------------------------------------------

def event_text(kind: str, data: dict) -> str:
    """One line (or block) a person reads for an event."""
    if kind == "status":
        return " · ".join(x for x in (data.get("status", ""), data.get("detail", "")) if x)
    if kind == "tool_use":
        return f"{data.get('name', '')}: {data.get('summary', '')}"
    if kind == "tool_result":
        return data.get("output", "") or ("ok" if data.get("ok") else "failed")
    if kind == "command":
        out = data.get("output", "")
        return f"$ {data.get('command', '')}  → exit {data.get('exit_code')}" + (f"\n{out}" if out else "")
    if kind == "turn_result":
        return data.get("summary") or data.get("error") or ("done" if data.get("ok") else "failed")
    if kind == "user_message" and data.get("source") == "steer":
        return f"{data.get('text', '')}  (sent to the agent while it worked)"
    if kind == "turn_end":
        return f"turn {data.get('turn')} " + ("finished" if data.get("ok") else "cancelled" if data.get("cancelled")
                                             else "interrupted" if data.get("interrupted")
                                             else f"failed: {data.get('error', '')}")
    if kind == "diff_stat":
        return f"+{data.get('added', 0)} −{data.get('removed', 0)} in {data.get('files', 0)} file(s)"
    if kind == "pull_request":
        return f"pull request: {data.get('url', '')}"
    for key in ("text", "message", "summary", "url"):
        if data.get(key):
            return str(data[key])
    return json.dumps(data, sort_keys=True)


def event_view(e: Event, with_html: bool = False) -> dict:
    """What the page shows for an event; `with_html`: also its body rendered (the live stream's)."""
    data = e.data or {}
    view = {"id": e.id, "kind": e.kind, "text": event_text(e.kind, data), "stream": data.get("stream", ""),
            "at": e.created_at.strftime("%H:%M:%S")}
    if e.kind == "message" or (e.kind == "turn_result" and data.get("summary")):
        view["markdown"] = conversation.render_markdown(data.get("text") or data.get("summary") or "")
    if e.kind == "turn_result":
        view["usage"] = conversation.usage_line(data)
    elif e.kind == "tool_use":
        view.update(name=data.get("name", ""), summary=data.get("summary", ""),
                    input=conversation.tool_input_text(data))
    elif e.kind == "tool_result":
        view.update(ok=bool(data.get("ok")), lines=len((data.get("output") or "").splitlines()))
    if with_html:
        view["html"] = render_template("console/_event_body.html", e=view)
        view.pop("markdown", None)  # Markup is not JSON; the html holds it
    return view


def patch_rows(patch: str) -> list[dict]:
    """A unified diff as rows: kind (hunk|add|del|ctx), old and new line numbers, text."""
    rows, old, new = [], 0, 0
    for raw in patch.splitlines():
        if raw.startswith("@@"):
            m = HUNK.match(raw)
            if m:
                old, new = int(m.group(1)), int(m.group(2))
            rows.append({"kind": "hunk", "old": None, "new": None, "text": raw})
        elif raw.startswith(("+++", "---", "diff ", "index ", "\\")):
            continue
        elif raw.startswith("+"):
            rows.append({"kind": "add", "old": None, "new": new, "text": raw[1:]})
            new += 1
        elif raw.startswith("-"):
            rows.append({"kind": "del", "old": old, "new": None, "text": raw[1:]})
            old += 1
        else:
            rows.append({"kind": "ctx", "old": old, "new": new, "text": raw[1:]})
            old += 1
            new += 1
    return rows


def owner_name(s: Session, user) -> str | None:
    return s.owner.username if shows_owner(user, s) else None


def _list_query(user):
    args = request.args
    query = visible_sessions(user)
    scope = args.get("scope", "all")
    if scope == "mine":
        query = query.where(Session.owner == user)
    elif scope == "team":
        query = query.where((Session.owner != user) & (Session.visibility == "team"))
    # archived sessions show only where asked for
    query = query.where(Session.archived_at.is_null(False) if scope == "archived" else Session.archived_at.is_null())
    if args.get("status") in STATUSES:
        query = query.where(Session.status == args["status"])
    if args.get("repository"):
        query = query.where(Repository.name == args["repository"])  # joined by visible_sessions
    return query


# --- the list and a new session -------------------------------------------------------------------

@bp.get("/")
def index():
    user = require_user()
    page = query_int("page", 1, low=1, high=10 ** 9)
    query = _list_query(user).order_by(Session.created_at.desc(), Session.id.desc())
    rows = list(query.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE))
    has_next = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    repos = [r.name for r in Repository.select().order_by(Repository.name) if may_use_repository(user, r)]
    template = "console/_session_rows.html" if request.args.get("partial") else "console/sessions.html"
    return render_template(template, sessions=rows, page=page, has_next=has_next, repos=repos, statuses=STATUSES,
                           args=request.args, owner_name=owner_name, user=user)


@bp.route("/sessions/new", methods=["GET", "POST"])
def new():
    user = require_user()
    repos = [r for r in Repository.select().order_by(Repository.name) if may_use_repository(user, r)]
    # the user's own environments first, then those a team of theirs shares
    envs = list(usable_environments(user).order_by(Environment.owner != user, Environment.name))
    error, form = None, request.form
    if request.method == "POST":
        try:
            agent = form.get("agent", "claude-code")
            req = NewSession(repository=form.get("repository", ""), prompt=form.get("prompt", ""),
                             environment=form.get("environment") or None, agent=agent,
                             base_branch=form.get("base_branch", "").strip() or None,
                             visibility=form.get("visibility", "private"),
                             command=(form.get("command", "").strip() or None) if agent == "command" else None,
                             model=form.get("model") or None)
            raw = form.get("attempts", "1").strip() or "1"
            if not raw.isdigit():
                raise Invalid(f"attempts must be a whole number from 1 to {attempts.MAX_ATTEMPTS}, got {raw[:10]!r}")
            created = attempts.create(sessions_service(), user, req, int(raw))
            if created[0].group_id:
                return redirect(url_for("console_groups.compare", group_id=created[0].group_id))
            return redirect(url_for("console_sessions.show", session_id=created[0].id))
        except Invalid as e:  # shown on the form, what was typed kept
            error = e.message + (f" — {e.hint}" if e.hint else "")
        except Exception as e:
            from appliance.errors import ApplianceError

            if not isinstance(e, ApplianceError):
                raise
            error = e.message + (f" — {e.hint}" if e.hint else "")
    default_env = next((e for e in envs if e.is_default and e.owner_id == user.id), envs[0] if envs else None)
    return render_template("console/new_session.html", repos=repos, envs=envs, agents=AGENTS, error=error,
                           models=model_choice().allowed,
                           form=form, default_env=default_env), (400 if error else 200)


# --- one session ----------------------------------------------------------------------------------

def _session_context(user, session: Session, tab: str) -> dict:
    can_change = may_change(user, session)
    # what the egress proxy metered for it: for the owner and admins, like the API's …/usage
    metered = report.of_session(sessions_service().config, session) if can_change else None
    return {"s": session, "tab": tab, "can_change": can_change, "owner": owner_name(session, user),
            "user": user, "visibilities": VISIBILITIES, "answer_only": answers.answer_only_turns(session),
            "metered": metered}


@bp.get("/sessions/<session_id>")
def show(session_id):
    user = require_user()
    s = session_for(user, session_id)
    turns = s.turns_in_order()
    events, earlier = _events_before(s, None)
    share_url = request.url_root.rstrip("/") + url_for("console_sessions.show", session_id=s.id)
    return render_template("console/session.html", turns=turns, events=[event_view(e) for e in events],
                           last_event=events[-1].id if events else 0, share_url=share_url, earlier=earlier,
                           active=s.status in Status.ACTIVE, usage=_usage(s), pr=pr_details(s),
                           **_session_context(user, s, "conversation"))


def _events_before(s: Session, before: int | None) -> tuple[list[Event], bool]:
    """The EVENTS_PAGE events before id `before` (None: the newest), oldest first, and whether
    there are older ones."""
    query = Event.select().where(Event.session == s)
    if before is not None:
        query = query.where(Event.id < before)
    rows = list(query.order_by(Event.id.desc()).limit(EVENTS_PAGE + 1))
    return rows[:EVENTS_PAGE][::-1], len(rows) > EVENTS_PAGE


def _usage(s: Session) -> dict:
    """Cost and tokens per turn number ('turns') and for the session ('total')."""
    rows = (Event.select(Event.data, Turn.number).join(Turn, on=(Event.turn == Turn.id))
            .where((Event.session == s) & (Event.kind == "turn_result")).order_by(Event.id).tuples())
    per_turn, total = conversation.usage_of_turns([(number, data or {}) for data, number in rows])
    return {"turns": per_turn, "total": total}


@bp.get("/sessions/<session_id>/events/earlier")
def earlier_events(session_id):
    """The page of events before `before` as rendered list items, for "Load earlier events"."""
    user = require_user()
    s = session_for(user, session_id)
    events, more = _events_before(s, query_int("before", 0, low=0, high=2 ** 62))
    return jsonify(html=render_template("console/_events.html", events=[event_view(e) for e in events]),
                   before=events[0].id if events and more else None)


@bp.get("/sessions/<session_id>/state")
def state(session_id):
    """Status, diff counts, PR link and the turn list, for the live page to refresh what it shows
    beside the event stream."""
    user = require_user()
    s = session_for(user, session_id)
    turns = s.turns_in_order()
    return jsonify(status=s.status, detail=s.status_detail, added=s.diff_added, removed=s.diff_removed,
                   pr_url=s.pr_url, turns_html=render_template("console/_turns.html", s=s, turns=turns,
                                                                answer_only=answers.answer_only_turns(s),
                                                                usage=_usage(s)))


@bp.post("/sessions/<session_id>/message")
def message(session_id):
    user = require_user()
    sessions_service().message(user, session_id, request.form.get("text", ""))
    return redirect(url_for("console_sessions.show", session_id=session_id))


@bp.post("/sessions/<session_id>/interrupt")
def interrupt(session_id):
    user = require_user()
    sessions_service().interrupt(user, session_id)
    return redirect(url_for("console_sessions.show", session_id=session_id))


@bp.post("/sessions/<session_id>/cancel")
def cancel(session_id):
    user = require_user()
    sessions_service().cancel(user, session_id)
    return redirect(url_for("console_sessions.show", session_id=session_id))


@bp.post("/sessions/<session_id>/complete")
def complete(session_id):
    user = require_user()
    sessions_service().complete(user, session_id)
    return redirect(url_for("console_sessions.show", session_id=session_id))


@bp.post("/sessions/<session_id>/archive")
def archive(session_id):
    user = require_user()
    removal.set_archived(user, session_id, request.form.get("archived", "1") == "1")
    return redirect(url_for("console_sessions.show", session_id=session_id))


@bp.post("/sessions/<session_id>/delete")
def delete(session_id):
    user = require_user()
    removal.delete(user, session_id, services().config.state_dir, sessions_service().sandboxes)
    return redirect(url_for("console_sessions.index"))


@bp.post("/sessions/<session_id>/share")
def share(session_id):
    user = require_user()
    sessions_service().set_visibility(user, session_id, request.form.get("visibility", ""),
                                      request.form.get("hide_owner") == "on")
    return redirect(url_for("console_sessions.show", session_id=session_id) + "#share")


# --- diff, comments, PR ---------------------------------------------------------------------------

@bp.get("/sessions/<session_id>/diff")
def diff(session_id):
    user = require_user()
    s = session_for(user, session_id)
    with_diff = _turns_with_diff(s)
    shown = query_int("turn", 0, low=0, high=10 ** 6) or (with_diff[-1] if with_diff else 0)
    if shown and shown not in with_diff:
        raise Invalid(f"turn {shown} has no diff", hint="pick one of the turns the diff tab lists")
    files = (list(DiffFile.select().join(Turn).where((DiffFile.session == s) & (Turn.number == shown))
                  .order_by(DiffFile.path)) if shown else [])
    # the file asked for, else the first one with text changes to show
    selected = (next((f for f in files if f.path == request.args.get("file")), None)
                or next((f for f in files if not f.binary), files[0] if files else None))
    comments = list(Comment.select().where(Comment.session == s).order_by(Comment.path, Comment.line, Comment.id))
    by_line, outdated = anchors.place_comments(comments, shown, {f.path: f.patch for f in files})
    pending = [c for c in comments if c.sent_in_id is None]
    return render_template("console/diff.html", files=files, selected=selected,
                           pr_blocker=answers.pull_request_blocker(s), answer=answers.latest_answer(s),
                           **_pr_proposal(s),
                           turns_with_diff=with_diff, shown_turn=shown,
                           rows=patch_rows(selected.patch) if selected and not selected.binary else [],
                           by_line=by_line, outdated=outdated, pending=pending, author_of=lambda c: name_in_session(user, s, c.author),
                           **_session_context(user, s, "diff"))


def _turns_with_diff(s: Session) -> list[int]:
    """The numbers of the session's turns that have a diff (each one the branch against its base)."""
    return [n for (n,) in Turn.select(Turn.number).join(DiffFile, on=(DiffFile.turn == Turn.id))
            .where(Turn.session == s).distinct().order_by(Turn.number).tuples()]


@bp.post("/sessions/<session_id>/comments")
def comment(session_id):
    user = require_user()
    path = request.form.get("path", "")
    try:
        line = int(request.form.get("line", ""))
    except ValueError:
        raise Invalid("the line must be a number") from None
    turn = request.form.get("turn") or None
    if turn is not None and not turn.isdigit():
        raise Invalid("the turn must be a number")
    c = sessions_service().comment(user, session_id, path, line, request.form.get("body", ""),
                                   request.form.get("side", "new"), turn=turn and int(turn))
    return redirect(url_for("console_sessions.diff", session_id=session_id, file=path, turn=c.turn_number))


@bp.post("/sessions/<session_id>/comments/send")
def send_comments(session_id):
    user = require_user()
    sessions_service().send_comments(user, session_id)
    return redirect(url_for("console_sessions.show", session_id=session_id))


def _pr_proposal(s) -> dict:
    if s.pr_url:
        return {"pr_title": "", "pr_body": ""}
    title, body = pr_text.proposed(s)
    return {"pr_title": title, "pr_body": body}


@bp.post("/sessions/<session_id>/pr")
def create_pr(session_id):
    form = request.form
    sessions_service().create_pull_request(require_user(), session_id, title=form.get("title"), body=form.get("body"),
                                           autofix=form.get("autofix") == "1" if "title" in form else None)
    return redirect(url_for("console_sessions.diff", session_id=session_id))


# --- egress and terminal tabs ---------------------------------------------------------------------

@bp.get("/sessions/<session_id>/egress")
def egress(session_id):
    user = require_user()
    s, rows = sessions_service().egress_log(user, session_id)
    return render_template("console/egress.html", rows=rows, **_session_context(user, s, "egress"))


@bp.get("/sessions/<session_id>/terminal")
def terminal(session_id):
    user = require_user()
    s = session_for(user, session_id)
    if not may_change(user, s):
        from appliance.errors import NotFound

        raise NotFound(f"no terminal for session {s.id}")
    return render_template("console/terminal.html", **_session_context(user, s, "terminal"))
