"""`appliance worker`: run one worker host in the foreground (systemd/appliance-worker.service).
`--join URL --token T` first joins control (a token from `appliance host join-token` there) and
records what it issued in this host's configuration file (README "More than one server")."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("worker", help="run a worker host: pull turns from the shared PostgreSQL and run them "
                                             "(more than one host; needs cluster_mode = \"on\")")
    p.add_argument("--host-id", help="this host's id (default: the setting host_id, else the hostname)")
    p.add_argument("--state-dir", help="this host's state directory (default: the setting state_dir)")
    p.add_argument("--capacity", type=int, help="turns run at once here (default: the setting host_capacity)")
    joining = p.add_argument_group("joining control (once, on a new host)")
    joining.add_argument("--join", metavar="URL", help="control's URL (https://…): join it, write the shared "
                                                       "database into the config file, then run as a worker")
    joining.add_argument("--token", help="the join token from `appliance host join-token` or Admin → Hosts")
    joining.add_argument("--no-run", action="store_true",
                         help="join and exit (then start it with systemctl enable --now appliance-worker)")
    trust = joining.add_mutually_exclusive_group()
    trust.add_argument("--fingerprint", metavar="SHA256", help="pin control's certificate (as `appliance login`)")
    trust.add_argument("--ca", metavar="FILE", help="control's certificate must chain to this CA")
    p.set_defaults(handler=worker)


def worker(args, ctx) -> int:
    from appliance_base import config as config_mod

    from ..cluster.worker import Worker
    from ..logs import configure_logging

    if args.join:
        join(args)
        if args.no_run:
            return 0
    elif args.token or args.fingerprint or args.ca or args.no_run:
        from ..errors import Invalid

        raise Invalid("--token, --fingerprint, --ca and --no-run are for joining", hint="add --join https://CONTROL")
    overrides = {key: value for key, value in (("host_id", args.host_id), ("state_dir", args.state_dir),
                                               ("host_capacity", args.capacity)) if value is not None}
    cfg = config_mod.load(overrides=overrides)
    configure_logging(cfg)
    Worker(cfg).run()
    return 0


def join(args) -> None:
    import os
    import socket
    from pathlib import Path

    from appliance_base.config import DEFAULT_CONFIG_PATH
    from appliance_base.config_file import read_settings

    from ..client.join import join as join_control
    from ..errors import Invalid

    if not args.token:
        raise Invalid("--join needs --token", hint="mint one on control: `appliance host join-token` (or Admin → Hosts)")
    path = Path(os.environ.get("APPLIANCE_CONFIG", DEFAULT_CONFIG_PATH))
    host_id = args.host_id or str(read_settings(path).get("host_id") or "") or socket.gethostname()
    grant = join_control(path, args.join, args.token, host_id, fingerprint=args.fingerprint or "", ca=args.ca or "")
    print(f"joined {args.join} as host {grant['host_id']}; the shared database and cluster_mode are in {path}",
          flush=True)
