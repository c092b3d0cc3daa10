"""`/api/v1/sessions/<id>/transcript`: the agent's transcript, for teleport (owner and admins)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance.errors import ApplianceError

from .api import appliance_error, require_token
from .app import services
from .auth import current_user

bp = Blueprint("transcript", __name__, url_prefix="/api/v1")
bp.register_error_handler(ApplianceError, appliance_error)
bp.before_request(require_token)


@bp.get("/sessions/<session_id>/transcript")
def transcript(session_id):
    session, data = services().sessions.transcript(current_user(), session_id)
    return jsonify({"session": session.id, "agent": session.agent, "agent_session_id": session.agent_session_id,
                    "transcript": data.decode(errors="replace")})
