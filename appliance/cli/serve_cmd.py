"""`appliance serve`: run the daemon in the foreground (systemd and scripts/run use this)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the appliance daemon in the foreground")
    p.set_defaults(handler=serve)


def serve(args, ctx) -> int:
    from ..daemon import Daemon
    from ..logs import configure_logging

    configure_logging(ctx.config)
    daemon = Daemon(ctx.config)
    daemon.start()
    print(f"appliance listening on {daemon.url}", flush=True)
    daemon.serve_forever()
    return 0
