"""`appliance worker`: run one worker host in the foreground (systemd/appliance-worker.service)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("worker", help="run a worker host: pull turns from the shared PostgreSQL and run them "
                                             "(more than one host; needs cluster_mode = \"on\")")
    p.add_argument("--host-id", help="this host's id (default: the setting host_id, else the hostname)")
    p.add_argument("--state-dir", help="this host's state directory (default: the setting state_dir)")
    p.add_argument("--capacity", type=int, help="turns run at once here (default: the setting host_capacity)")
    p.set_defaults(handler=worker)


def worker(args, ctx) -> int:
    from appliance_base import config as config_mod

    from ..cluster.worker import Worker
    from ..logs import configure_logging

    overrides = {key: value for key, value in (("host_id", args.host_id), ("state_dir", args.state_dir),
                                               ("host_capacity", args.capacity)) if value is not None}
    cfg = config_mod.load(overrides=overrides)
    configure_logging(cfg)
    Worker(cfg).run()
    return 0
