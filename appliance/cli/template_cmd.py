"""`appliance template list [--json]|drop KEY`: the guest templates guests start from, and the warm
pool (README "Warm start"). Run on the server, beside the daemon."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("template", help="guest templates (warm start): list, drop; the warm pool's slots")
    sub = p.add_subparsers(dest="template_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="templates with state, size and users; the warm pool's slots")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_templates)
    drop = sub.add_parser("drop", help="no new guest starts from it; its files go once no sandbox uses them")
    drop.add_argument("key", help="the template's key (`appliance template list`)")
    drop.set_defaults(handler=drop_template)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB"


def list_templates(args, ctx) -> int:
    from .. import template_admin

    ctx.db  # noqa: B018 - opens the database
    templates = template_admin.list_templates(ctx.config)
    pool = template_admin.pool_status(ctx.config)
    if args.json:
        print(json.dumps({"templates": [t.to_dict() for t in templates], "pool": pool.to_dict()}, indent=1))
        return 0
    if not ctx.config.templated:
        print("guest templates are off (guest_templates = off): guests cold-boot")
    if not templates:
        print("no guest templates")
    for t in templates:
        made = f"made {t.made_at:%Y-%m-%d %H:%M}Z in {t.build_seconds:.0f} s" if t.made_at and t.build_seconds else ""
        where = "files on another host" if t.files is None else _mib(t.bytes_on_disk) if t.files else "no files here"
        print(f"{t.key}  {t.state:<8} {t.profile:<10} {t.vcpus} vCPU {t.memory_mb} MiB {t.domain_type:<4}"
              f"  {where:<14} {t.users} using  {made}{'  host ' + t.host if t.host else ''}")
        if t.error and t.state == "failed":
            print(f"    error: {t.error}")
    if pool.enabled or pool.profiles:
        print(f"warm pool: {pool.target} slot(s) kept" if pool.enabled else "warm pool: off")
        for p in pool.profiles:
            print(f"  {p.profile:<10} {p.waiting} waiting, {p.starting} starting, {p.retiring} retiring"
                  f" (keeps {p.target})")
    return 0


def drop_template(args, ctx) -> int:
    from .. import template_admin

    ctx.db  # noqa: B018 - opens the database
    view = template_admin.drop_template(ctx.config, args.key)
    users = f"; its disk stays while {view.users} sandbox(es) use it" if view.users else ""
    print(f"template {view.key}: dropped (no new guest starts from it){users}")
    return 0
