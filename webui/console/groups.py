"""Best-of-N in the console: the attempts of one task side by side (status, diffstat, the agent's
result, every file's diff) and "Pick this one" (appliance/sessions/attempts.py)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.sessions import attempts
from appliance.sessions.access import may_change

from ..groups import last_result
from . import require_user, sessions_service
from .sessions import patch_rows

bp = Blueprint("console_groups", __name__)


@bp.get("/groups/<group_id>")
def compare(group_id):
    user = require_user()
    sessions = attempts.members(user, group_id)
    columns = [{"s": s, "result": last_result(s), "can_change": may_change(user, s),
                "files": [{"f": f, "rows": [] if f.binary else patch_rows(f.patch)} for f in s.latest_diff_files()]}
               for s in sessions]
    return render_template("console/compare.html", group_id=group_id, columns=columns,
                           picked=attempts.picked(sessions))


@bp.post("/groups/<group_id>/pick")
def pick(group_id):
    user = require_user()
    attempts.pick(sessions_service(), user, group_id, request.form.get("session", ""))
    return redirect(url_for("console_groups.compare", group_id=group_id))
