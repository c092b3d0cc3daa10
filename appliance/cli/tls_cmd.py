"""`appliance tls init|show`: the console's HTTPS certificate (scripts/install runs `init`)."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("tls", help="the console's HTTPS certificate: make a self-signed one, show it")
    sub = p.add_subparsers(dest="tls_command", metavar="ACTION", required=True)
    q = sub.add_parser("init", help="make a self-signed certificate and key (kept if they exist, unless --force)")
    q.add_argument("--cert", required=True, help="where the PEM certificate goes (e.g. /etc/appliance/tls/cert.pem)")
    q.add_argument("--key", required=True, help="where the PEM key goes (mode 0600)")
    q.add_argument("--name", action="append", default=[],
                   help="a host name or address it is for (repeatable; default: this host's names and loopback)")
    q.add_argument("--force", action="store_true", help="replace an existing pair (clients must pin the new one)")
    q.set_defaults(handler=init)
    q = sub.add_parser("show", help="fingerprint and expiry of the configured certificate (tls_cert)")
    q.set_defaults(handler=show)


def init(args, ctx) -> int:
    from .. import tls

    cert, key = Path(args.cert), Path(args.key)
    if cert.exists() and key.exists() and not args.force:
        info = tls.certificate_info(cert)
        print(f"kept {cert} ({info.fingerprint}, expires {info.not_after:%Y-%m-%d})")
        return 0
    info = tls.generate_self_signed(cert, key, list(dict.fromkeys(args.name)) or tls.host_names())
    print(f"made {cert} for {', '.join(info.names)}, expires {info.not_after:%Y-%m-%d}")
    print(f"fingerprint: {info.fingerprint}")
    return 0


def show(args, ctx) -> int:
    from .. import tls
    from ..errors import ApplianceError

    cfg = ctx.config
    if not cfg.tls_cert:
        raise ApplianceError("no certificate configured: the console serves plain HTTP",
                             hint="set tls_cert/tls_key, e.g. after 'appliance tls init --cert … --key …'")
    info = tls.certificate_info(cfg.tls_cert)
    print(f"{cfg.tls_cert}\nnames: {', '.join(info.names)}\nexpires: {info.not_after:%Y-%m-%d %H:%M} UTC\n"
          f"fingerprint: {info.fingerprint}")
    return 0
