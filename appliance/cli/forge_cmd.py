"""`appliance forge webhook|login`: connecting forges on the server, without the console (admins).

    appliance forge webhook acme/api [--rotate]          # the URL path and secret to paste into the forge
    appliance forge login add github octocat alice       # octocat on GitHub is appliance user alice
    appliance forge login list [github] | appliance forge login remove ID
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("forge", help="forge webhooks and forge logins (admins, on the server)")
    sub = p.add_subparsers(dest="forge_command", metavar="ACTION", required=True)

    q = sub.add_parser("webhook", help="a repository's webhook URL path and secret")
    q.add_argument("repository", help="the repository's name or id")
    q.add_argument("--rotate", action="store_true", help="make a new secret (the old one stops working)")
    q.set_defaults(handler=webhook)

    q = sub.add_parser("login", help="which forge login is which appliance user")
    logins = q.add_subparsers(dest="login_command", metavar="ACTION", required=True)
    r = logins.add_parser("add", help="map a forge login to an appliance user")
    r.add_argument("forge", choices=("github", "gitlab", "gitea"))
    r.add_argument("login", help="the login on the forge")
    r.add_argument("username", help="the appliance user")
    r.set_defaults(handler=login_add)
    r = logins.add_parser("list", help="the mappings")
    r.add_argument("forge", nargs="?", choices=("github", "gitlab", "gitea"))
    r.set_defaults(handler=login_list)
    r = logins.add_parser("remove", help="remove a mapping by its id")
    r.add_argument("id", type=int)
    r.set_defaults(handler=login_remove)


def webhook(args, ctx) -> int:
    from ..errors import Invalid
    from ..prloop.hooks import rotate_webhook_secret, webhook_path, webhook_secret
    from ..prloop.signatures import FORGES
    from ..repos.service import get_repository

    ctx.db  # noqa: B018 - opens the database (and migrates it)
    repo = get_repository(args.repository)
    if repo.forge not in FORGES:
        raise Invalid(f"repository {repo.name}'s forge is {repo.forge}: it sends no webhooks",
                      hint=f"webhooks come from {', '.join(FORGES)}")
    secret = rotate_webhook_secret(repo) if args.rotate else webhook_secret(repo)
    base = ctx.config.public_url.rstrip("/") or "https://THIS-SERVER"
    print(f"url     {base}{webhook_path(repo)}")
    print(f"secret  {secret}")
    return 0


def login_add(args, ctx) -> int:
    from ..prloop.logins import set_forge_login

    ctx.db  # noqa: B018
    row = set_forge_login(args.forge, args.login, args.username)
    print(f"{args.forge} login {row.login} is {row.user.username} (mapping {row.id})")
    return 0


def login_list(args, ctx) -> int:
    from ..prloop.models import ForgeLogin

    ctx.db  # noqa: B018
    query = ForgeLogin.select().order_by(ForgeLogin.forge, ForgeLogin.login)
    if args.forge:
        query = query.where(ForgeLogin.forge == args.forge)
    rows = list(query)
    if not rows:
        print("no forge logins mapped: 'appliance forge login add FORGE LOGIN USER'")
    for row in rows:
        print(f"{row.id}  {row.forge}  {row.login}  {row.user.username}")
    return 0


def login_remove(args, ctx) -> int:
    from ..prloop.logins import remove_forge_login

    ctx.db  # noqa: B018
    remove_forge_login(args.id)
    print(f"removed mapping {args.id}")
    return 0
