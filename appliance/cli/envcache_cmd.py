"""`appliance envcache list|drop`: the environment caches (kept guest disks after an environment's
setup; README "Warm start"), run on the server."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("envcache", help="environment caches (setup done, kept): list, drop")
    sub = p.add_subparsers(dest="envcache_command", metavar="ACTION", required=True)
    q = sub.add_parser("list", help="caches with their environment, repository, age, size and uses")
    q.add_argument("--all", action="store_true", help="also the dropped ones")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=list_caches)
    q = sub.add_parser("drop", help="no session starts from this cache any more (its files go once unused)")
    q.add_argument("cache_id", type=int)
    q.set_defaults(handler=drop)


def list_caches(args, ctx) -> int:
    from ..sessions import envcache

    ctx.db  # noqa: B018 - opens the database
    rows = [envcache.view(c) for c in envcache.list_caches(include_dropped=args.all)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no environment caches (one is kept after a session's environment setup script succeeds)")
    for r in rows:
        size = f"{(r['size_bytes'] or 0) / (1 << 20):.0f} MiB"
        print(f"{r['id']:>4}  {r['state']:<8} {r['owner']}/{r['environment']:<20} {r['repository']:<24} "
              f"{size:>9}  used {r['uses']}x  made {r['created_at'][:16]}" + (f"  {r['error']}" if r["error"] else ""))
    return 0


def drop(args, ctx) -> int:
    from ..sessions import envcache

    ctx.db  # noqa: B018 - opens the database
    envcache.drop_cache(args.cache_id)
    print(f"environment cache {args.cache_id} dropped: the next session of its environment sets up afresh")
    return 0
