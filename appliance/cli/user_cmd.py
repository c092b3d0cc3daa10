"""`appliance user add NAME [--admin] [--password-stdin]` and `appliance user token NAME`: the first
admin (and any user) without the console, and API tokens for the CLI and scripts:

    appliance user token NAME [--label LABEL] [--days N]   issue one (shown once)
    appliance user token NAME --list                         the live ones
    appliance user token NAME --revoke LABEL_OR_ID           revoke one (or all with that label)
    appliance user token NAME --revoke-all
"""

from __future__ import annotations

import getpass
import sys

from ..accounts.passwords import MIN_PASSWORD
from ..errors import Invalid, NotFound


def register(subparsers) -> None:
    p = subparsers.add_parser("user", help="console users and their API tokens")
    sub = p.add_subparsers(dest="user_command", metavar="SUBCOMMAND", required=True)
    add = sub.add_parser("add", help="add a user who signs in to the console with a password",
                         description="Add a user. The password is asked for (twice), or read from stdin.")
    add.add_argument("name", help="the user name to sign in with")
    add.add_argument("--admin", action="store_true", help="the user manages users, teams, repositories, keys")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.set_defaults(handler=_add)
    tok = sub.add_parser("token", help="issue, list or revoke a user's API tokens",
                         description="Issue a bearer token for the REST API (shown once; only its hash is "
                                     "kept), list the live ones, or revoke them.")
    tok.add_argument("name", help="the user name")
    tok.add_argument("--label", default="cli", help="a name for the new token (default: cli)")
    tok.add_argument("--days", type=int, default=None, help="how long the new token works (default: 90)")
    what = tok.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list the user's live tokens")
    what.add_argument("--revoke", metavar="LABEL_OR_ID", help="revoke the token(s) with this label or id")
    what.add_argument("--revoke-all", action="store_true", help="revoke every token of the user")
    tok.set_defaults(handler=_token)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise Invalid("the passwords differ", hint="type the same password twice")
    return first


def _add(args, ctx) -> int:
    from werkzeug.security import generate_password_hash

    from ..accounts.models import User

    ctx.db  # noqa: B018 - opens the database (and migrates it)
    name = args.name.strip()
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise Invalid(f"{args.name!r} is not a user name", hint="use 1-64 letters, digits, '.', '-' or '_'")
    if User.select().where(User.username == name).exists():
        raise Invalid(f"user {name!r} already exists", hint="pick another name, or set a password in the console")
    password = _read_password(args.password_stdin)
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"the password is shorter than {MIN_PASSWORD} characters", hint="choose a longer one")
    User.create(username=name, is_admin=args.admin, password_hash=generate_password_hash(password))
    print(f"added {'admin' if args.admin else 'user'} {name}")
    return 0


def _token(args, ctx) -> int:
    from ..accounts import tokens
    from ..accounts.models import User

    ctx.db  # noqa: B018
    user = User.get_or_none(User.username == args.name)
    if user is None:
        raise NotFound(f"no user {args.name!r}", hint="add one with 'appliance user add NAME'")
    if args.list:
        for t in tokens.live(user):
            used = t.last_used_at.strftime("%Y-%m-%d") if t.last_used_at else "never"
            print(f"{t.id}\t{t.name}\texpires {t.expires_at:%Y-%m-%d}\tlast used {used}")
    elif args.revoke:
        print(f"revoked {tokens.revoke(user, args.revoke)} token(s) of {user.username}")
    elif args.revoke_all:
        print(f"revoked {tokens.revoke_all(user)} token(s) of {user.username}")
    else:
        print(tokens.issue(user, args.label, days=args.days))
    return 0
