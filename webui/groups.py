"""`/api/v1/groups/<id>`: best-of-N — the attempts of one task side by side, and picking the one
to keep (appliance/sessions/attempts.py)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance.errors import ApplianceError
from appliance.sessions import attempts
from appliance.sessions.models import Event, Session

from .api import appliance_error, json_body, require_token
from .app import services
from .auth import current_user
from .serialize import session_dict

bp = Blueprint("groups", __name__, url_prefix="/api/v1")
bp.register_error_handler(ApplianceError, appliance_error)
bp.before_request(require_token)


def last_result(s: Session) -> str | None:
    """What the agent said at the end of its last turn (a summary, often with its tests' outcome)."""
    row = (Event.select(Event.data).where((Event.session == s) & (Event.kind == "turn_result"))
           .order_by(Event.id.desc()).first())
    if row is None:
        return None
    data = row.data or {}
    return data.get("summary") or data.get("error") or None


def group_dict(group_id: str, sessions: list[Session]) -> dict:
    user = current_user()
    return {"id": group_id, "picked": attempts.picked(sessions), "attempts": [
        {**session_dict(s, user), "result": last_result(s),
         "files": [{"path": f.path, "change": f.change, "added": f.added, "removed": f.removed}
                   for f in s.latest_diff_files()]} for s in sessions]}


@bp.get("/groups/<group_id>")
def show_group(group_id):
    return jsonify(group_dict(group_id, attempts.members(current_user(), group_id)))


@bp.post("/groups/<group_id>/pick")
def pick(group_id):
    sessions = attempts.pick(services().sessions, current_user(), group_id, json_body()["session"])
    return jsonify(group_dict(group_id, sessions))
