"""What admins do with worker hosts: see them (capacity, load, heartbeat, version) and drain them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..errors import NotFound
from .models import Host, TurnAttempt


@dataclass
class HostView:
    id: str
    address: str
    capacity: int
    running: int  # turns running there now
    version: str
    heartbeat: datetime
    alive: bool
    draining: bool


def list_hosts(stale_after: float) -> list[HostView]:
    out = []
    for host in Host.select().order_by(Host.id):
        running = TurnAttempt.select().where((TurnAttempt.host == host.id) & TurnAttempt.finished_at.is_null()).count()
        out.append(HostView(host.id, host.address, host.capacity, running, host.version, host.heartbeat,
                            host.alive(stale_after), host.draining))
    return out


def set_draining(host_id: str, draining: bool) -> None:
    """Draining: no new turns go there (control routes its sessions to `any`, its worker puts back
    what it pulls); running turns finish."""
    if not Host.update(draining=draining).where(Host.id == host_id).execute():
        raise NotFound(f"no worker host {host_id!r}", hint="`appliance host list` shows the registered hosts")
