"""The `appliance` command. Each command group lives in its own module with `register(subparsers)`.

A handler is `handler(args, ctx) -> int | None`; `ctx` gives lazily-built shared objects
(configuration, database, hypervisor). Errors derived from ApplianceError are printed as one
`error:` line plus a `hint:` line and turn into the error's exit code; nothing else is caught.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys

from ..errors import ApplianceError
from ..redact import install_log_filter
from . import (
    backup_cmd,
    doctor_cmd,
    egress_cmd,
    envcache_cmd,
    forge_cmd,
    host_cmd,
    image_cmd,
    remote_cmd,
    repo_cmd,
    sandbox_cmd,
    serve_cmd,
    template_cmd,
    tls_cmd,
    user_cmd,
    worker_cmd,
)


class Context:
    """What handlers share, built on first use so `--help` and pure commands stay fast."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    @functools.cached_property
    def config(self):
        from appliance_base import config

        return config.load()

    @functools.cached_property
    def db(self):
        from ..db import open_database

        return open_database(self.config.database_url)

    @functools.cached_property
    def hypervisor(self):
        from ..sandbox.hypervisor import Hypervisor

        return Hypervisor(self.config.libvirt_uri)

    @functools.cached_property
    def sandboxes(self):
        from ..sandbox.manager import SandboxManager

        self.db  # noqa: B018 - the manager needs the database open
        return SandboxManager(self.config, self.hypervisor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="Run AI coding sessions in isolated guests.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # remote_cmd after sandbox_cmd: its `ssh` takes session ids and hands sandbox ids to the admin's
    for module in (image_cmd, sandbox_cmd, egress_cmd, doctor_cmd, serve_cmd, user_cmd, repo_cmd, remote_cmd,
                   backup_cmd, tls_cmd, forge_cmd, worker_cmd, host_cmd, envcache_cmd,
                   template_cmd):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)  # its INFO lines are noise to an admin
    install_log_filter()  # no credential-shaped string in the daemon's log
    ctx = Context(args)
    try:
        return args.handler(args, ctx) or 0
    except ApplianceError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
