"""Prometheus metrics: sessions by status, the queue, sandboxes by state, turn phase timings,
egress denials, model API spend, warm pool slots. Queries only; the web layer decides who may read them (webui/metrics.py)."""

from __future__ import annotations

import json

import peewee

from netpolicy.audit import EgressEvent

from .models import Sandbox, SandboxState
from .sessions.models import Session, Status, Turn

BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600)


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


def render(config=None) -> str:
    """The Prometheus text exposition of the current counts (with `config`: spend too)."""
    out: list[str] = []
    by_status = dict.fromkeys(Status.ALL, 0)
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
    if config is not None:
        from .sessions.spend import report

        out += report.metric_lines(config, _label)
        out += _pool_lines(config)
    return "\n".join(out) + "\n"


def _pool_lines(config) -> list[str]:
    from .template_admin import pool_status

    pool = pool_status(config)
    out = ["# HELP appliance_pool_slots Warm pool slots by profile: waiting (paused, ready to claim), starting "
           "(being cloned), retiring (being destroyed).", "# TYPE appliance_pool_slots gauge"]
    for p in pool.profiles:
        out += [f'appliance_pool_slots{{profile="{_label(p.profile)}",state="{state}"}} {n}'
                for state, n in (("waiting", p.waiting), ("starting", p.starting), ("retiring", p.retiring))]
    out += ["# HELP appliance_pool_target Warm pool slots kept ready per profile.", "# TYPE appliance_pool_target gauge"]
    out += [f'appliance_pool_target{{profile="{_label(p.profile)}"}} {p.target}' for p in pool.profiles]
    return out
