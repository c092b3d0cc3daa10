"""`appliance user add NAME [--admin] [--password-stdin]`, `appliance user token NAME` and
`appliance user first-admin [NAME]`: users without the console, API tokens for the CLI and scripts,
and the first admin of a new appliance (scripts/run and scripts/install run it):

    appliance user token NAME [--label LABEL] [--days N]   issue one (shown once)
    appliance user token NAME --list                         the live ones
    appliance user token NAME --revoke LABEL_OR_ID           revoke one (or all with that label)
    appliance user token NAME --revoke-all
    appliance user disable|enable NAME                       stop a user at once / let them in again
"""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

from ..accounts.passwords import MIN_PASSWORD
from ..errors import Invalid, NotFound

if TYPE_CHECKING:
    from ..accounts.service import FirstAdmin


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
    for action, text in (("disable", "stop a user: no sign-in, and their tokens and browsers stop at once"),
                         ("enable", "let a disabled user in again (their tokens work again)")):
        q = sub.add_parser(action, help=text)
        q.add_argument("name", help="the user name")
        q.set_defaults(handler=_set_disabled, disabled=(action == "disable"))
    first = sub.add_parser("first-admin", help="on a new appliance: an admin with a one-time password (shown once)",
                           description="When the appliance has no user at all, create an admin with a random "
                                       "password and an API token and print both once; otherwise change nothing.")
    first.add_argument("name", nargs="?", default="admin", help="the admin's user name (default: admin)")
    first.set_defaults(handler=_first_admin)


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
    from ..accounts.service import check_username

    ctx.db  # noqa: B018 - opens the database (and migrates it)
    name = check_username(args.name)
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


def _set_disabled(args, ctx) -> int:
    from ..accounts.models import User
    from ..accounts.service import set_disabled

    ctx.db  # noqa: B018
    user = User.get_or_none(User.username == args.name)
    if user is None:
        raise NotFound(f"no user {args.name!r}", hint="see the console's Users page")
    set_disabled(user, args.disabled)
    print(f"{'disabled' if args.disabled else 'enabled'} {user.username}")
    return 0


def first_admin_lines(first: FirstAdmin | None) -> list[str]:
    """How to get in, for a person reading the terminal: the new admin's secrets once, or where to sign in."""
    if first is None:
        return [("Sign in with your account. No account? An admin adds one on the console's Users page, "
                 "or on this server: 'appliance user add NAME'")]
    return [f"First admin: {first.user.username}",
            f"Password:    {first.password}  (shown once; change it in the console)",
            f"API token:   {first.token}  (for 'appliance login URL' from a laptop; shown once)"]


def _first_admin(args, ctx) -> int:
    from ..accounts.service import create_first_admin

    ctx.db  # noqa: B018 - opens the database (and migrates it)
    first = create_first_admin(args.name)
    if first is None:
        print("The appliance has users already: no first admin created.")
    print("\n".join(first_admin_lines(first)))
    return 0
