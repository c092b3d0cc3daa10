"""The appliance side of a test or bench run, as the daemon builds it: bridge, egress (nft,
resolver, supervised proxy), sandbox manager and session engine — on a bridge, subnet, tap prefix
and nft table of the caller's, so nothing touches a real appliance. Torn down whatever happens."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.db import open_database
from appliance.models import Sandbox, SandboxState
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sandbox.manager import SandboxManager
from appliance.sessions.engine import Engine
from appliance_base.config import Config
from netpolicy import bridge
from netpolicy.service import EgressPolicy

from helpers import make_config


@dataclass
class ApplianceWorld:
    cfg: Config
    egress: EgressPolicy
    sandboxes: SandboxManager
    engine: Engine


# The suite's session guests come from templates shared by every world of a run (one template per
# key, made by the first world that needs it); cold boot has its own tests (test_sandbox_lifecycle,
# test_restart…). A world that passes guest_templates itself (off, or its own template_dir) opts out.
SHARED_TEMPLATE_RAM = Path("/dev/shm/appliance-vmtest-templates")
SHARED_TEMPLATE_DISKS = Path("/var/tmp/appliance-vmtest-templates")


def share_templates(state: Path, settings: dict) -> None:
    if "guest_templates" in settings:
        return
    SHARED_TEMPLATE_DISKS.mkdir(mode=0o711, exist_ok=True)
    (state / "templates").symlink_to(SHARED_TEMPLATE_DISKS)
    settings.update(guest_templates="on", template_dir=str(SHARED_TEMPLATE_RAM))


def remove_shared_templates() -> None:
    shutil.rmtree(SHARED_TEMPLATE_RAM, ignore_errors=True)
    shutil.rmtree(SHARED_TEMPLATE_DISKS, ignore_errors=True)


def state_dir(prefix: str) -> Path:
    """A state dir qemu (libvirt-qemu) can traverse: pytest's own temp dirs are 0700."""
    path = Path(tempfile.mkdtemp(prefix=f"appliance-{prefix}-", dir="/var/tmp"))
    path.chmod(0o711)
    return path


@contextmanager
def appliance_world(hv: Hypervisor, state: Path, **settings):
    """Yields an ApplianceWorld with egress started; the engine is built but not started (start it
    once the test has set up what its first turn needs)."""
    share_templates(state, settings)
    cfg = make_config(state, **settings)
    open_database(cfg.database_url)
    egress = EgressPolicy(cfg)
    egress.ensure_bridge()
    engine = None
    try:
        egress.start()
        sandboxes = SandboxManager(cfg, hv, egress=egress)
        engine = Engine(cfg, sandboxes, has_credential=egress.has_credential)
        yield ApplianceWorld(cfg, egress, sandboxes, engine)
    finally:
        if engine is not None:
            engine.stop()
        manager = SandboxManager(cfg, hv, egress=egress)
        for sandbox in Sandbox.select().where(Sandbox.state.in_(SandboxState.LIVE)):
            manager.destroy(sandbox.id)
        egress.stop()
        egress.remove_rules()
        bridge.delete_link(cfg.bridge)


def remove(state: Path) -> None:
    shutil.rmtree(state, ignore_errors=True)


AGENT_TIMEOUT = float(os.environ.get("APPLIANCE_TEST_AGENT_TIMEOUT", 900))


def wait_idle(engine: Engine, sid: str, timeout: float = AGENT_TIMEOUT):
    """The session once its turn has ended (idle or failed), or an AssertionError with its last events."""
    from appliance.sessions.models import Event, Session, Status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = Session.get_by_id(sid)
        if s.status in (Status.IDLE, Status.FAILED) and sid not in engine.running_sessions():
            return s
        time.sleep(1)
    last = [(e.kind, e.data) for e in Event.select().where(Event.session == sid).order_by(Event.id.desc()).limit(15)]
    raise AssertionError(f"still {Session.get_by_id(sid).status}; the last events: {last[::-1]}")


def session_events(sid: str, kind: str) -> list[dict]:
    """The data of the session's events of one kind, oldest first."""
    from appliance.sessions.models import Event

    return [e.data for e in Event.select().where((Event.session == sid) & (Event.kind == kind)).order_by(Event.id)]
