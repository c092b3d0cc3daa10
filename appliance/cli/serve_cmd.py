"""`appliance serve`: run the daemon in the foreground (systemd and scripts/run use this)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the appliance daemon in the foreground")
    p.add_argument("--first-admin", action="store_true",
                   help="once listening, create the first admin if there is no user yet (its one-time password "
                        "is printed) and print how to sign in; scripts/run uses it")
    p.set_defaults(handler=serve)


def serve(args, ctx) -> int:
    from ..daemon import Daemon
    from ..logs import configure_logging

    configure_logging(ctx.config)
    daemon = Daemon(ctx.config)
    daemon.start()
    print(f"appliance listening on {daemon.url}", flush=True)
    if args.first_admin:
        from ..accounts.service import create_first_admin
        from .user_cmd import first_admin_lines

        with daemon.db.connection_context():
            first = create_first_admin()
        print("\n".join([f"Console: {daemon.url}", *first_admin_lines(first)]), flush=True)
    daemon.serve_forever()
    return 0
