"""`appliance backup PATH` / `appliance restore PATH`: the database and the hosted repositories."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("backup", help="back up the database and the hosted repositories (safe while running)")
    p.add_argument("path", help="a new directory, or a file ending in .tar.gz")
    p.set_defaults(handler=backup)

    p = subparsers.add_parser("restore", help="restore a backup into the state dir (stop the daemon first)")
    p.add_argument("path", help="a backup directory or .tar.gz file")
    p.add_argument("--force", action="store_true", help="replace a database that already holds sessions")
    p.set_defaults(handler=restore)


def backup(args, ctx) -> int:
    from .. import backup as b

    manifest = b.backup(ctx.config, args.path)
    print(f"backed up the database and {len(manifest['repositories'])} hosted repositories to {args.path}")
    return 0


def restore(args, ctx) -> int:
    from .. import backup as b

    manifest = b.restore(ctx.config, args.path, force=args.force)
    print(f"restored the database and {len(manifest['repositories'])} hosted repositories from {args.path} "
          f"(backup of {manifest['created_at']}) into {ctx.config.state_dir}")
    print("start the daemon: it reconciles guests and continues the sessions", file=sys.stderr)
    return 0
