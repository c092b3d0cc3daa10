"""Turns without guests (`turn_runner = "dry-run"`): the guest-less cluster test and
`scripts/bench cluster` run real workers, jobs, locks, routing and session rows, with this in place
of booting a guest and running an agent. A turn takes `dry_run_turn_seconds`; its "guest" is a
sandbox row on this worker's host that later turns reuse, as they would a real one."""

from __future__ import annotations

import time

from appliance_base.config import Config

from ..db import utcnow
from ..models import Sandbox, SandboxState
from ..sessions.lifecycle import move_to
from ..sessions.models import Session, Status, Turn, TurnStatus
from ..sessions.stream import emit


class DryRunRunner:
    def __init__(self, config: Config, host_id: str):
        self.config = config
        self.host_id = host_id

    def run(self, turn_id: int) -> None:
        turn = Turn.get_by_id(turn_id)
        session = turn.session
        Turn.update(status=TurnStatus.RUNNING, started_at=utcnow()).where(Turn.id == turn.id).execute()
        if not move_to(session, Status.PROVISIONING, "dry run", turn):
            return
        guest = self._guest(session, turn)
        move_to(session, Status.RUNNING, "agent (dry run)", turn)
        time.sleep(self.config.dry_run_turn_seconds)  # the agent's work, stood in for
        Turn.update(status=TurnStatus.COMPLETED, finished_at=utcnow()).where(Turn.id == turn.id).execute()
        move_to(session, Status.IDLE, "waiting for input", turn)
        emit(session, "turn_end", {"turn": turn.number, "ok": True, "guest": guest.id}, turn)

    def _guest(self, session: Session, turn: Turn) -> Sandbox:
        current = Sandbox.get_or_none(Sandbox.id == Session.get_by_id(session.id).sandbox_id)
        if current is not None and current.state == SandboxState.RUNNING and current.host == self.host_id:
            emit(session, "log", {"stream": "appliance", "text": f"reusing guest {current.id}"}, turn)
            return current
        guest = Sandbox.create(profile="dry-run", image_dir="", vcpus=1, memory_mb=1, disk_gb=1,
                               state=SandboxState.RUNNING, purpose="session", session_id=session.id,
                               host=self.host_id, ready_at=utcnow())
        Session.update(sandbox_id=guest.id).where(Session.id == session.id).execute()
        emit(session, "log", {"stream": "appliance", "text": f"new guest {guest.id} on host {self.host_id}"}, turn)
        return guest
