"""`appliance doctor`: is this host able to run sandboxes, and if not, what to do."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check libvirt, acceleration, images, disk, nftables")
    p.set_defaults(handler=doctor)


def doctor(args, ctx) -> int:
    from ..doctor import FAIL, run_all

    checks = run_all(ctx.config, ctx.hypervisor, ctx.sandboxes if _db_ok(ctx) else None)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:4}  {c.name.ljust(width)}  {c.detail}")
        if c.hint:
            print(f"{'':4}  {''.ljust(width)}  hint: {c.hint}")
    return 1 if any(c.status == FAIL for c in checks) else 0


def _db_ok(ctx) -> bool:
    try:
        ctx.db  # noqa: B018
        return True
    except Exception:
        return False
