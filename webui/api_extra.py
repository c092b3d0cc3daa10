"""REST routes for the terminal workflow and operations, beside the core API (webui/api.py):

  GET  /api/v1/me                          who the token belongs to
  GET  /api/v1/sessions/<id>/transcript    the agent's transcript (owner/admin; teleport)
  WS   /api/v1/sessions/<id>/terminal      a shell in the session's live guest (owner/admin)
  GET  /metrics                            Prometheus text (admins' tokens, or loopback callers)

As in the core API, a session the caller may not use is 404, exactly like one that does not exist.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask_sock import Sock

from appliance.errors import ApplianceError, NotFound

from .api import Unauthorized, appliance_error
from .auth import current_user

log = logging.getLogger(__name__)

api_extra = Blueprint("api_extra", __name__)
sock = Sock()

api_extra.register_error_handler(ApplianceError, appliance_error)  # the same JSON errors as the core API


@api_extra.before_request
def _require_user():
    # Runs before the websocket handshake too, so a refused terminal is a plain HTTP 401/404.
    if request.endpoint == "api_extra.metrics":
        return None
    if current_user() is None:
        raise Unauthorized("authentication required", hint="send 'Authorization: Bearer <token>' (appliance login)")
    if request.endpoint == "api_extra.terminal":
        _owned_session(request.view_args["session_id"])
    return None


def _owned_session(session_id: str):
    """The session when the caller owns it or is an admin; 404 for everyone else."""
    from appliance.sessions.access import may_change, session_for

    user = current_user()
    session = session_for(user, session_id)
    if not may_change(user, session):
        raise NotFound(f"no session {session_id}", hint="see 'appliance tasks'")
    return session


# --- who am I ------------------------------------------------------------------------------------

@api_extra.get("/api/v1/me")
def me():
    user = current_user()
    return jsonify({"id": user.id, "username": user.username, "display_name": user.display_name,
                    "is_admin": user.is_admin, "webhook_url": user.webhook_url, "email": user.email})


@api_extra.route("/api/v1/me", methods=["PATCH"])
def update_me():
    """Where the caller hears that a turn ended: `webhook_url` (http/https) and `email`."""
    from appliance.accounts.models import User
    from appliance.errors import Invalid
    from appliance.sessions import notify, webhook

    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Invalid("the request body must be a JSON object")
    fields = {}
    if "webhook_url" in data:
        url = str(data["webhook_url"] or "").strip()
        if url:
            webhook.check_url(url, current_app.config["APPLIANCE"].webhook_allowed_networks)
        fields["webhook_url"] = url
    if "email" in data:
        email = str(data["email"] or "").strip()
        if email and not notify.is_one_address(email):
            raise Invalid(f"email: {email!r} is not exactly one e-mail address", hint="write one address, e.g. alice@example.com")
        fields["email"] = email
    if fields:
        User.update(**fields).where(User.id == current_user().id).execute()
        g.user = User.get_by_id(current_user().id)  # the cached caller is stale now
    return me()


# --- transcript ----------------------------------------------------------------------------------

from appliance.sessions.transcripts import fetch as fetch_transcript  # noqa: E402
from appliance.sessions.transcripts import guest_path as guest_transcript_path  # noqa: E402
from appliance.sessions.transcripts import load as load_transcript  # noqa: E402
from appliance.sessions.transcripts import store as store_transcript  # noqa: E402
from appliance.sessions.transcripts import workdir_for  # noqa: E402


def _sandboxes():
    manager = current_app.config.get("SANDBOXES")
    if manager is None:
        from appliance.sandbox.hypervisor import Hypervisor
        from appliance.sandbox.manager import SandboxManager

        cfg = current_app.config["APPLIANCE"]
        manager = current_app.config["SANDBOXES"] = SandboxManager(cfg, Hypervisor(cfg.libvirt_uri))
    return manager


def _live_sandbox(session):
    from appliance.models import Sandbox, SandboxState

    if not session.sandbox_id:
        return None
    sandbox = Sandbox.get_or_none(Sandbox.id == session.sandbox_id)
    return sandbox if sandbox is not None and sandbox.state == SandboxState.RUNNING else None


def _refresh_from_guest(session, state_dir) -> None:
    """While the guest lives, its copy is the freshest: keep it on the host as the runner does."""
    sandbox = _live_sandbox(session)
    if sandbox is None or session.agent != "claude-code" or not session.agent_session_id:
        return
    path = str(guest_transcript_path(workdir_for(session.repository.name), session.agent_session_id))
    try:
        with _sandboxes().ssh(sandbox) as guest:
            data, notice = fetch_transcript(guest, path, current_app.config["APPLIANCE"].transcript_max_mb)
    except Exception as e:  # the guest may be gone or the file not written yet
        log.info("transcript of %s not downloadable from %s: %s", session.id, sandbox.id, e)
        return
    if notice:
        log.warning("session %s: %s", session.id, notice)
    if data:
        store_transcript(state_dir, session.id, data, guest_path=path)


@api_extra.get("/api/v1/sessions/<session_id>/transcript")
def transcript(session_id):
    session = _owned_session(session_id)
    cfg = current_app.config["APPLIANCE"]
    data = None
    if session.agent_session_id:
        _refresh_from_guest(session, cfg.state_dir)
        data = load_transcript(cfg.state_dir, session.id)
    if data is None:
        raise NotFound(f"session {session.id} has no agent transcript", hint="it appears after the agent's first turn")
    return jsonify({"session": session.id, "agent": session.agent, "agent_session_id": session.agent_session_id,
                    "transcript": data.decode(errors="replace")})


# --- terminal ------------------------------------------------------------------------------------

@sock.route("/api/v1/sessions/<session_id>/terminal", bp=api_extra)
def terminal(ws, session_id):
    """Binary frames carry terminal bytes both ways; text frames are JSON control messages:
    client → `{"resize": [cols, rows]}`; server → `{"error": …}` or `{"exit": code}` at the end."""
    session = _owned_session(session_id)  # checked before the handshake as well; cheap to repeat
    sandbox = _live_sandbox(session)
    if sandbox is None:
        ws.send(json.dumps({"error": f"session {session.id} has no running guest",
                            "hint": "send it a message ('appliance message') to start one"}))
        return
    cols, rows = 80, 24
    first = ws.receive(timeout=5)
    if isinstance(first, str):
        try:
            cols, rows = json.loads(first).get("resize", [cols, rows])
        except (ValueError, TypeError, AttributeError):
            pass
    guest = _sandboxes().ssh(sandbox)
    try:
        guest.connect()
        chan = guest.transport.open_session()
        chan.get_pty(term="xterm-256color", width=int(cols), height=int(rows))
        chan.invoke_shell()
    except Exception as e:
        guest.close()
        ws.send(json.dumps({"error": f"cannot reach the guest: {e}"}))
        return

    def pump_out():
        try:
            while True:
                data = chan.recv(65536)
                if not data:
                    break
                ws.send(data)
            ws.send(json.dumps({"exit": chan.recv_exit_status()}))
        except Exception:
            pass
        finally:
            try:
                ws.close()
            except Exception:
                pass

    reader = threading.Thread(target=pump_out, daemon=True)
    reader.start()
    try:
        while ws.connected and not chan.closed:
            msg = ws.receive(timeout=1)
            if msg is None:
                continue
            if isinstance(msg, bytes):
                chan.sendall(msg)
            else:
                try:
                    c, r = json.loads(msg).get("resize", (None, None))
                    if c and r:
                        chan.resize_pty(width=int(c), height=int(r))
                except (ValueError, TypeError, AttributeError):
                    pass
    finally:
        chan.close()
        reader.join(timeout=5)
        guest.close()


# --- metrics -------------------------------------------------------------------------------------

BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600)


def _may_read_metrics() -> bool:
    """Admins' tokens anywhere; without a token only callers on loopback that did not come through
    a reverse proxy (no Forwarded / X-Forwarded-For header), e.g. a Prometheus on this host."""
    user = current_user()
    if user is not None:
        return bool(user.is_admin)
    if request.headers.get("Forwarded") or request.headers.get("X-Forwarded-For"):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _histogram(name: str, help_: str, values: list[float]) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
    for bound in BUCKETS:
        lines.append(f'{name}_bucket{{le="{bound}"}} {sum(1 for v in values if v <= bound)}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {len(values)}')
    lines.append(f"{name}_sum {sum(values):.3f}")
    lines.append(f"{name}_count {len(values)}")
    return lines


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics() -> str:
    import peewee

    from appliance.models import Sandbox, SandboxState
    from appliance.sessions.models import Session, Status, Turn
    from netpolicy.audit import EgressEvent

    out: list[str] = []
    by_status = dict.fromkeys((*Status.ACTIVE, Status.IDLE, *Status.FINAL), 0)
    for row in Session.select(Session.status, peewee.fn.COUNT(Session.id).alias("n")).group_by(Session.status):
        by_status[row.status] = row.n
    out += ["# HELP appliance_sessions Sessions by status.", "# TYPE appliance_sessions gauge"]
    out += [f'appliance_sessions{{status="{_label(s)}"}} {n}' for s, n in by_status.items()]
    out += ["# HELP appliance_queue_length Sessions waiting for a guest (status queued).",
            "# TYPE appliance_queue_length gauge", f"appliance_queue_length {by_status.get(Status.QUEUED, 0)}"]
    by_state = dict.fromkeys(SandboxState.LIVE, 0)
    for row in (Sandbox.select(Sandbox.state, peewee.fn.COUNT(Sandbox.id).alias("n"))
                .where(Sandbox.state.in_(SandboxState.LIVE)).group_by(Sandbox.state)):
        by_state[row.state] = row.n
    out += ["# HELP appliance_sandboxes Live sandboxes by state.", "# TYPE appliance_sandboxes gauge"]
    out += [f'appliance_sandboxes{{state="{s}"}} {n}' for s, n in by_state.items()]
    out += ["# HELP appliance_sandboxes_running Guests running now.", "# TYPE appliance_sandboxes_running gauge",
            f"appliance_sandboxes_running {by_state.get(SandboxState.RUNNING, 0)}"]
    timings = {"boot": [], "clone": [], "setup": [], "agent": []}
    for (raw,) in Turn.select(Turn.timings).tuples():
        data = json.loads(raw) if isinstance(raw, str) else (raw or {})
        for key, values in timings.items():
            v = data.get(key) if isinstance(data, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values.append(float(v))
    for key, values in timings.items():
        out += _histogram(f"appliance_turn_{key}_seconds", f"Seconds a turn spent in {key}.", values)
    out += ["# HELP appliance_egress_denied_total Egress requests and lookups denied (kept audit rows).",
            "# TYPE appliance_egress_denied_total counter"]
    for row in (EgressEvent.select(EgressEvent.source, peewee.fn.COUNT(EgressEvent.id).alias("n"))
                .where(EgressEvent.verdict == "deny").group_by(EgressEvent.source)):
        out.append(f'appliance_egress_denied_total{{source="{_label(row.source)}"}} {row.n}')
    return "\n".join(out) + "\n"


@api_extra.get("/metrics")
def metrics():
    if not _may_read_metrics():
        return jsonify({"error": "metrics are for admins and for callers on this host",
                        "hint": "send an admin's token, or scrape from the appliance host itself"}), 403
    return Response(render_metrics(), mimetype="text/plain; version=0.0.4")
