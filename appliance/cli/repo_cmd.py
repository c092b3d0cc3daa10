"""`appliance repo add|list|remove`: the admin's repositories, on the server, without the console.

The same rules as the console's Repositories page (appliance/repos/service.py). A credential is
read from stdin, never from the command line (where `ps` and shell history would see it), and is
never shown back.
"""

from __future__ import annotations

import getpass
import json
import sys

from ..errors import Invalid


def register(subparsers) -> None:
    p = subparsers.add_parser("repo", help="repositories sessions may work on (admins, on the server)")
    sub = p.add_subparsers(dest="repo_command", metavar="ACTION", required=True)

    q = sub.add_parser("add", help="add a repository",
                       description="Add a repository. With --credential, the token or private key is read "
                                   "from stdin (a token may also be typed at a prompt).")
    q.add_argument("name", help="the short name people type, e.g. acme/api")
    q.add_argument("url", help="the git remote: https://…, ssh://…, git@host:path, or a bare repository's path")
    q.add_argument("--branch", default="main", help="the default base branch (default: main)")
    q.add_argument("--credential", default="none", metavar="none|token|ssh_key",
                   help="how the host authenticates to the remote; the secret is read from stdin (default: none)")
    q.add_argument("--credential-username", default="", help="the user name for a token (default: x-access-token)")
    q.add_argument("--forge", default="none", metavar="github|gitlab|gitea|local|none",
                   help="where pull requests go (default: none)")
    q.add_argument("--forge-project", default="", metavar="OWNER/NAME", help="the project on the forge")
    q.add_argument("--forge-api-url", default="", metavar="URL", help="the forge's API, for a self-hosted one")
    q.add_argument("--team", help="only this team's members may use it (default: everyone)")
    q.set_defaults(handler=add)

    q = sub.add_parser("list", help="list repositories (credentials never shown)")
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.set_defaults(handler=list_repositories)

    q = sub.add_parser("remove", help="remove a repository no session uses")
    q.add_argument("name", help="the repository's name or id")
    q.set_defaults(handler=remove)


def _read_secret(kind: str) -> str:
    if kind not in ("token", "ssh_key"):  # none, or a wrong kind save_repository names
        return ""
    if sys.stdin.isatty():
        if kind == "ssh_key":
            raise Invalid("a private key is read from stdin",
                          hint="pipe it in: appliance repo add NAME URL --credential ssh_key < KEYFILE")
        return getpass.getpass("token: ").strip()
    secret = sys.stdin.read().strip()
    if not secret:
        raise Invalid(f"--credential {kind}: nothing on stdin",
                      hint=f"pipe the {'private key' if kind == 'ssh_key' else 'token'} in, e.g. "
                           f"appliance repo add NAME URL --credential {kind} < FILE")
    return secret


def add(args, ctx) -> int:
    from ..repos.service import save_repository

    ctx.db  # noqa: B018 - opens the database (and migrates it)
    repo = save_repository(None, {
        "name": args.name, "url": args.url, "default_branch": args.branch, "credential_kind": args.credential,
        "credential_username": args.credential_username, "credential_secret": _read_secret(args.credential),
        "forge": args.forge, "forge_project": args.forge_project, "forge_api_url": args.forge_api_url,
        "team": args.team or "",
    })
    print(f"added repository {repo.name} ({repo.url}, branch {repo.default_branch})")
    return 0


def _row(repo) -> dict:
    return repo.public_dict() | {"team": repo.team.name if repo.team_id else ""}


def list_repositories(args, ctx) -> int:
    from ..repos.models import Repository

    ctx.db  # noqa: B018
    rows = [_row(r) for r in Repository.select().order_by(Repository.name)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no repositories yet: add one with 'appliance repo add NAME URL'")
        return 0
    for r in rows:
        print(f"{r['name']}  {r['url']}  branch {r['default_branch']}  forge {r['forge']}"
              f"{' ' + r['forge_project'] if r['forge_project'] else ''}  credential {r['credential']}"
              f"  team {r['team'] or '(everyone)'}")
    return 0


def remove(args, ctx) -> int:
    from ..sessions.removal import remove_repository

    ctx.db  # noqa: B018
    repo = remove_repository(args.name)
    print(f"removed repository {repo.name}")
    return 0
