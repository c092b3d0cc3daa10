"""`appliance host list|drain|undrain`: the worker hosts of a cluster (README "More than one server")."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("host", help="worker hosts (more than one server): list, drain, undrain")
    sub = p.add_subparsers(dest="host_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="hosts with capacity, running turns, heartbeat and version").set_defaults(
        handler=list_hosts)
    for name, helptext in (("drain", "no new turns on this host; running ones finish"),
                           ("undrain", "let the host take turns again")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("host_id")
        q.set_defaults(handler=drain, draining=name == "drain")


def list_hosts(args, ctx) -> int:
    from ..cluster import hosts

    ctx.db  # noqa: B018 - opens the database
    rows = hosts.list_hosts(ctx.config.host_stale_after)
    if not rows:
        print("no worker hosts registered (start `appliance worker` on each libvirt host)")
    for h in rows:
        state = ("draining, " if h.draining else "") + ("alive" if h.alive else "silent")
        print(f"{h.id:<20} {h.running}/{h.capacity} running  {state:<16} heartbeat {h.heartbeat:%Y-%m-%d %H:%M:%S}Z"
              f"  v{h.version}  {h.address}")
    return 0


def drain(args, ctx) -> int:
    from ..cluster import hosts

    ctx.db  # noqa: B018 - opens the database
    hosts.set_draining(args.host_id, args.draining)
    print(f"host {args.host_id}: " + ("draining (running turns finish)" if args.draining else "takes turns again"))
    return 0
