"""`appliance egress log ID`: the egress audit log of a sandbox or a session."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("egress", help="egress policy: what sandboxes reached, or tried to")
    sub = p.add_subparsers(dest="egress_command", metavar="SUBCOMMAND", required=True)
    log = sub.add_parser(
        "log",
        help="allow/deny decisions of the proxy and the resolver for a sandbox or session",
        description="Show the egress audit log (proxy and resolver decisions), oldest first.",
    )
    log.add_argument("id", metavar="SESSION_OR_SANDBOX", help="a sandbox id (sb-...) or a session id")
    log.add_argument("--limit", type=int, default=100, help="show the newest N events (default 100)")
    log.add_argument("--json", action="store_true", help="one JSON object per line")
    log.add_argument("--appliance-host", metavar="HOST_ID",
                     help="more than one host: only what this worker host's proxy and resolver decided")
    log.set_defaults(handler=_log)


def _log(args, ctx) -> int:
    from netpolicy import audit

    ctx.db  # noqa: B018 - opens the database
    rows = audit.query(args.id, limit=max(1, args.limit), appliance_host=args.appliance_host)
    if args.json:
        for row in rows:
            print(json.dumps(row.as_dict()))
        return 0
    if not rows:
        print(f"no egress events for {args.id}")
        return 0
    for row in rows:
        d = row.as_dict()
        target = d["host"] or "-"
        if d["port"]:
            target += f":{d['port']}"
        what = " ".join(x for x in (d["method"], d["path"]) if x)
        size = f" {d['bytes']}B" if d["bytes"] is not None else ""
        on = f"  on {d['appliance_host']}" if d["appliance_host"] else ""  # more than one host: which decided
        print(
            f"{d['time']}  {d['verdict']:<5}  {d['source']:<5}{on}  {d['sandbox_id'] or '-'}  "
            f"{target}  {what}{size}  [{d['policy'] or '-'}] {d['reason']}"
        )
    return 0
