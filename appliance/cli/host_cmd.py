"""`appliance host list|drain|undrain|join-token`: the worker hosts of a cluster (README "More than one server")."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("host", help="worker hosts (more than one server): list, drain, undrain, join-token")
    sub = p.add_subparsers(dest="host_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="hosts with capacity, running turns, heartbeat and version").set_defaults(
        handler=list_hosts)
    for name, helptext in (("drain", "no new turns on this host; running ones finish"),
                           ("undrain", "let the host take turns again")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("host_id")
        q.set_defaults(handler=drain, draining=name == "drain")
    q = sub.add_parser("join-token", help="on control: a single-use join token for a new worker host, and the "
                                          "`appliance worker --join` command to run there")
    q.add_argument("--ttl", type=int, metavar="MINUTES", help="how long it stays valid (default 60)")
    q.set_defaults(handler=join_token)


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


def join_token(args, ctx) -> int:
    from ..cluster import join

    ctx.db  # noqa: B018 - opens the database
    token, row = join.mint(ctx.config, "cli", args.ttl)
    print(f"join token (works once, until {row.expires_at:%Y-%m-%d %H:%M} UTC; not shown again):\n  {token}\n"
          f"on the new host, as root:\n  {join.join_command(ctx.config, token)}")
    return 0
