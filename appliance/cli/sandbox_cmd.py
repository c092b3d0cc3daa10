"""`appliance sandbox ...` and `appliance ssh`: the admin's hands on guests."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("sandbox", help="create, use and destroy guests")
    sub = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)

    p = sub.add_parser("create", help="boot a new sandbox and wait until SSH answers")
    p.add_argument("--profile", help="image profile (default: the configured default_profile)")
    p.add_argument("--vcpus", type=int)
    p.add_argument("--memory", type=int, dest="memory_mb", metavar="MiB")
    p.add_argument("--disk", type=int, dest="disk_gb", metavar="GiB")
    p.add_argument("--network", default="limited", choices=("none", "limited", "custom", "full"),
                   help="egress access level (default: limited, the default allowlist)")
    p.add_argument("--allow", action="append", default=[], metavar="DOMAIN",
                   help="with --network custom: an allowed domain (*.example.com for subdomains); repeatable")
    p.add_argument("--with-defaults", action="store_true", help="with --network custom: also allow the default list")
    p.add_argument("--no-wait", action="store_true", help="return once the guest is started")
    p.set_defaults(handler=create)

    p = sub.add_parser("list", help="list sandboxes")
    p.add_argument("--all", action="store_true", help="include destroyed, failed and lost ones")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=list_sandboxes)

    p = sub.add_parser("exec", help="run a command in a sandbox; exits with its exit code")
    p.add_argument("sandbox")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    p.set_defaults(handler=exec_command)

    p = sub.add_parser("ssh", help="interactive shell in a sandbox")
    p.add_argument("sandbox")
    p.set_defaults(handler=ssh)

    p = sub.add_parser("destroy", help="destroy sandboxes: domain, overlay and keys gone")
    p.add_argument("sandboxes", nargs="+", metavar="SANDBOX")
    p.set_defaults(handler=destroy)

    p = sub.add_parser("reconcile", help="make libvirt, taps and files agree with the database")
    p.set_defaults(handler=reconcile)

    p = subparsers.add_parser("ssh", help="interactive shell in a sandbox (same as 'sandbox ssh')")
    p.add_argument("sandbox")
    p.set_defaults(handler=ssh)


def create(args, ctx) -> int:
    from netpolicy.allowlist import Policy

    from ..sandbox.manager import SandboxRequest

    network = Policy.make(args.network, args.allow, include_defaults=args.with_defaults)
    request = SandboxRequest(profile=args.profile, vcpus=args.vcpus, memory_mb=args.memory_mb, disk_gb=args.disk_gb,
                             network=network)
    print("booting…", file=sys.stderr, flush=True)
    sandbox = ctx.sandboxes.create(request, wait=not args.no_wait)
    print(f"{sandbox.id} {sandbox.state} {sandbox.address} ({sandbox.accel})")
    return 0


def list_sandboxes(args, ctx) -> int:
    rows = ctx.sandboxes.list(include_ended=args.all)
    if args.json:
        print(json.dumps([
            {"id": s.id, "state": s.state, "profile": s.profile, "address": s.address, "accel": s.accel,
             "vcpus": s.vcpus, "memory_mb": s.memory_mb, "disk_gb": s.disk_gb, "purpose": s.purpose, "session": s.session_id,
             "created_at": s.created_at.isoformat(), "error": s.error} for s in rows
        ], indent=2))
        return 0
    table = [("ID", "STATE", "PROFILE", "ADDRESS", "ACCEL", "CPU/MEM/DISK", "CREATED (UTC)")]
    for s in rows:
        table.append((s.id, s.state, s.profile, s.address or "-", s.accel or "-",
                      f"{s.vcpus}/{s.memory_mb}M/{s.disk_gb}G", s.created_at.strftime("%Y-%m-%d %H:%M:%S")))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    return 0


def exec_command(args, ctx) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        print("error: no command given\nhint: appliance sandbox exec SANDBOX -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    sandbox = ctx.sandboxes.get_live(args.sandbox)
    command = argv[0] if len(argv) == 1 else shlex.join(argv)
    with ctx.sandboxes.ssh(sandbox) as guest:
        result = guest.exec(command, on_stdout=_writer(sys.stdout), on_stderr=_writer(sys.stderr))
    return result.exit_code


def _writer(stream):
    def write(data: bytes) -> None:
        stream.buffer.write(data)
        stream.buffer.flush()

    return write


def ssh(args, ctx) -> int:
    sandbox = ctx.sandboxes.get_live(args.sandbox)
    with ctx.sandboxes.ssh(sandbox) as guest:
        return guest.interactive()


def destroy(args, ctx) -> int:
    status = 0
    from ..errors import ApplianceError

    for sandbox_id in args.sandboxes:
        try:
            sandbox = ctx.sandboxes.destroy(sandbox_id)
            print(f"{sandbox.id} {sandbox.state}")
        except ApplianceError as e:
            print(f"error: {e.message}", file=sys.stderr)
            if e.hint:
                print(f"hint: {e.hint}", file=sys.stderr)
            status = e.exit_code
    return status


def reconcile(args, ctx) -> int:
    report = ctx.sandboxes.reconcile()
    for key, items in report.items():
        print(f"{key.replace('_', ' ')}: {', '.join(items) if items else 'none'}")
    return 0
