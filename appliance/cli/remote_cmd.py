"""The engineer's commands: they talk to an appliance's REST API with the stored login.

  appliance login URL [--token-stdin] [--fingerprint SHA256 | --ca FILE]
  appliance remote "PROMPT" [--env NAME] [--agent A] [--base BRANCH] [--with-context] [--attempts N]
  appliance env list | appliance env default NAME
  appliance tasks [--watch] [--json]   (on a terminal: pick a row, `t` teleports to it)
  appliance logs [-f] ID
  appliance diff ID | pr ID | message ID [TEXT] [--interrupt] | cancel ID | share ID --visibility V
  appliance archive ID [--undo] | delete ID
  appliance teleport [ID] [--stash]
  appliance ssh ID          (a session id: a shell in its guest through the appliance;
                             a sandbox id: the admin's direct shell, on the server itself)
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time

from ..errors import ApplianceError, Invalid
from ..sessions.models import AGENTS, Status


def register(subparsers) -> None:
    from ..client import context  # the --with-context bounds, stated in --help

    p = subparsers.add_parser("login", help="store the appliance's URL and your API token (0600)")
    p.add_argument("url", help="the appliance, e.g. https://appliance.example.com")
    p.add_argument("--token-stdin", action="store_true", help="read the token from stdin instead of prompting")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--fingerprint", metavar="SHA256",
                       help="trust the server's certificate with this SHA-256 fingerprint (no question asked)")
    trust.add_argument("--ca", metavar="FILE", help="trust the server's certificate if this CA signed it")
    p.set_defaults(handler=login)

    p = subparsers.add_parser("remote", help="start a session on the appliance from this git checkout")
    p.add_argument("prompt", help="the task")
    p.add_argument("--env", help="environment name (default: your default environment, see 'appliance env')")
    p.add_argument("--agent", choices=AGENTS, help="coding agent (default: claude-code)")
    p.add_argument("--base", help="branch the session starts from (default: the current branch)")
    p.add_argument("--model", help="the model the agent uses, one the admin allows (default: the environment's, "
                                   "else the appliance's)")
    p.add_argument("--attempts", type=int, default=1, metavar="N",
                   help="best-of-N: start N (1-4) sessions of the task, each in its own guest, to compare and pick "
                        "one in the console (default: 1)")
    p.add_argument("--with-context", action="store_true",
                   help="send the local Claude Code conversation of this checkout along as context: its text, "
                        f"the plan from plan mode (up to {context.PLAN_CHARS} characters) and one line per tool "
                        f"call (up to {context.TOOL_CALL_CHARS} characters each; tool results stay local); at "
                        f"most the latest {context.LIMIT} characters, the plan always kept")
    p.set_defaults(handler=remote)

    p = subparsers.add_parser("env", help="your environments; the default one is what 'remote' uses")
    sub = p.add_subparsers(dest="env_command", metavar="ACTION", required=True)
    q = sub.add_parser("list", help="list your environments")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=env_list)
    q = sub.add_parser("default", help="make an environment your default")
    q.add_argument("name")
    q.set_defaults(handler=env_default)

    p = subparsers.add_parser("tasks", help="sessions you can see, with their status; on a terminal, pick one "
                                            "(↑/↓) and press t to teleport to it here")
    p.add_argument("--watch", action="store_true", help="refresh every few seconds (Ctrl-C ends)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="also sessions shared with you (default: yours)")
    p.add_argument("--archived", action="store_true", help="only archived sessions (default: none of them)")
    p.set_defaults(handler=tasks)

    p = subparsers.add_parser("logs", help="a session's event stream")
    p.add_argument("-f", "--follow", action="store_true", help="keep following until the session waits or ends")
    p.add_argument("session")
    p.set_defaults(handler=logs)

    p = subparsers.add_parser("diff", help="the session's changes against its base branch")
    p.add_argument("session")
    p.add_argument("--stat", action="store_true", help="only the per-file counts")
    p.set_defaults(handler=diff)

    p = subparsers.add_parser("pr", help="create a pull request for the session's branch")
    p.add_argument("session")
    p.add_argument("--title", help="default: the session's title")
    p.add_argument("--body", help="default: the agent's final summary and the diffstat")
    p.add_argument("--autofix", action=argparse.BooleanOptionalAction, default=None,
                   help="failed checks and review comments queue turns (default: the repository's setting)")
    p.set_defaults(handler=pr)

    p = subparsers.add_parser("message", help="send a follow-up, steer a running session, or interrupt it",
                              description="While a turn runs, Claude Code gets the message at once (steering); "
                                          "other agents take it as the next turn. --interrupt stops the running "
                                          "turn first (the guest, the branch and the session stay).")
    p.add_argument("session")
    p.add_argument("text", nargs="?", help="the message (optional with --interrupt)")
    p.add_argument("--interrupt", action="store_true", help="stop the running turn; TEXT, if given, is the next turn")
    p.set_defaults(handler=message)

    p = subparsers.add_parser("cancel", help="cancel a session: the agent stops, the guest goes")
    p.add_argument("session")
    p.set_defaults(handler=cancel)

    p = subparsers.add_parser("archive", help="hide a session from the lists ('appliance tasks --archived' shows them)")
    p.add_argument("session")
    p.add_argument("--undo", action="store_true", help="bring an archived session back")
    p.set_defaults(handler=archive)

    p = subparsers.add_parser("delete", help="delete a session's conversation, diffs, comments and transcript "
                                             "(not while a turn runs; the branch upstream stays)")
    p.add_argument("session")
    p.set_defaults(handler=delete)

    p = subparsers.add_parser("share", help="who may see a session")
    p.add_argument("session")
    p.add_argument("--visibility", required=True, choices=("private", "team", "public"))
    p.set_defaults(handler=share)

    p = subparsers.add_parser("teleport", help="continue a session here: its branch and its Claude Code conversation")
    p.add_argument("session", nargs="?", help="session id (default: pick one)")
    p.add_argument("--stash", action="store_true", help="stash uncommitted changes without asking")
    p.set_defaults(handler=teleport)

    if "ssh" in subparsers.choices:
        # the admin's `appliance ssh SANDBOX` (sandbox_cmd) is registered already: take it over,
        # ses-… ids go through the appliance, anything else stays the admin's direct shell
        p = subparsers.choices["ssh"]
        p.description = SSH_HELP
    else:
        p = subparsers.add_parser("ssh", help=SSH_HELP, description=SSH_HELP)
        p.add_argument("sandbox", metavar="ID")
    p.set_defaults(handler=ssh)


SSH_HELP = ("a shell in a session's guest (ID ses-…) through the appliance, for its owner and admins; "
            "on the server itself, an admin's shell in a sandbox (ID sb-…)")


def _client():
    from ..client import Client, load_login

    return Client(load_login())


# -- login ------------------------------------------------------------------------------------------

def login(args, ctx) -> int:
    from ..client import Client, Login, save_login, trust
    from ..client.store import load_login, normalize_server

    server = normalize_server(args.url)
    try:
        before = load_login()
    except ApplianceError:
        before = None
    pinned_before = before.fingerprint if before is not None and before.server == server else ""
    # Trust is settled before the token is asked for or sent (a first-use question on a terminal).
    ask = _ask_trust(server) if sys.stdin.isatty() and not args.token_stdin else None
    trusted = trust.decide(server, fingerprint=args.fingerprint or "", ca=args.ca or "",
                           pinned_before=pinned_before, ask=ask)
    if server.startswith("http://") and trust.host_port(server)[0] not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: {server} is plain HTTP: the token crosses the network in clear", file=sys.stderr)
    if args.token_stdin:
        token = sys.stdin.readline().strip()
    else:
        token = getpass.getpass(f"API token for {server} (make one at {server}/tokens): ").strip()
    if not token:
        raise Invalid("no token given", hint=f"paste a token from the console's API tokens page, {server}/tokens")
    login = Login(server, token, **trusted)
    me = Client(login).get("/me")  # nothing is stored unless the token works
    path = save_login(login)
    pinned = f", certificate {login.fingerprint} pinned" if login.fingerprint else ""
    print(f"logged in to {server} as {me['username']} (saved in {path}{pinned})")
    return 0


def _ask_trust(server: str):
    def ask(fingerprint: str) -> bool:
        print(f"{server} presents a certificate no trusted authority signed.\n"
              f"  fingerprint: {fingerprint}\n"
              "Compare it with what scripts/install printed or 'appliance doctor' shows on the server.", file=sys.stderr)
        return input("Trust this certificate? [y/N] ").strip().lower() in ("y", "yes")

    return ask


# -- remote -----------------------------------------------------------------------------------------

def remote(args, ctx) -> int:
    from ..client.git import Checkout, match_repository

    client = _client()
    checkout = Checkout(".")
    origin = checkout.origin_url()
    repos = client.get("/repositories")["repositories"]
    repo = match_repository(origin, repos)
    if repo is None:
        raise ApplianceError(f"the appliance has no repository for this checkout's origin ({origin})",
                             hint="ask an admin to add it, or run this from a clone of one of: "
                                  + ", ".join(r["name"] for r in repos[:8]))
    branch = checkout.current_branch()
    base = args.base or branch
    if args.base is None:
        pushed, why = checkout.is_pushed(branch)
        if not pushed:
            raise ApplianceError(f"{why}: the session would not see your work",
                                 hint=f"push it first: git push -u origin {branch}")
    elif checkout.remote_head(base) is None:
        raise ApplianceError(f"branch {base!r} is not on origin", hint=f"push it first: git push -u origin {base}")
    prompt = args.prompt
    if args.with_context:
        from ..client import context

        cwd = checkout.root if os.path.realpath(os.getcwd()) == str(checkout.root) else os.getcwd()
        path = context.latest_transcript(cwd)
        prompt = context.with_context(prompt, path.read_text(errors="replace"), workdir=os.path.realpath(cwd))
        print(f"with the conversation in {path} as context", file=sys.stderr)
    body = {"repository": repo["name"], "prompt": prompt, "base_branch": base}
    if args.env:
        body["environment"] = args.env
    if args.agent:
        body["agent"] = args.agent
    if args.model:
        body["model"] = args.model
    if not 1 <= args.attempts <= 4:
        raise Invalid(f"--attempts must be from 1 to 4, got {args.attempts}", hint="e.g. --attempts 3")
    if args.attempts > 1:
        body["attempts"] = args.attempts
    session = client.post("/sessions", body)
    group = session.get("group")
    if group:
        for sid in group["sessions"]:
            print(sid)
        print(f"{args.attempts} attempts of the task: compare them and pick one at "
              f"{client.server}/groups/{group['id']}", file=sys.stderr)
    else:
        print(session["id"])
    print(f"{client.console_url(session['id'])}  ({repo['name']}, {base} → {session['work_branch']}, "
          f"env {session['environment']})", file=sys.stderr)
    print(f"follow it: appliance logs -f {session['id']}", file=sys.stderr)
    return 0


# -- environments -----------------------------------------------------------------------------------

def env_list(args, ctx) -> int:
    client = _client()
    envs = client.get("/environments")["environments"]
    if args.json:
        print(json.dumps(envs, indent=2))
        return 0
    if not envs:
        print("no environments yet: sessions get the default one (limited network)", file=sys.stderr)
        return 0
    me = client.get("/me")["username"]  # environments a team shares are listed with their owner
    rows = [("", "NAME", "NETWORK", "PROFILE")]
    rows += [("*" if e["is_default"] and e.get("owner", me) == me else "",
              e["name"] + ("" if e.get("owner", me) == me else f" (shared by {e['owner']})"), e["network_level"],
              e["profile"] or "-") for e in envs]
    _table(rows)
    return 0


def env_default(args, ctx) -> int:
    client = _client()
    envs = client.get("/environments")["environments"]
    me = client.get("/me")["username"]
    env = next((e for e in envs if e["name"] == args.name and e.get("owner", me) == me), None)
    if env is None:
        raise ApplianceError(f"you have no environment named {args.name!r}",
                             hint="see 'appliance env list' (add environments in the console)")
    client.patch(f"/environments/{env['id']}", {"is_default": True})
    print(f"default environment: {env['name']}")
    return 0


# -- sessions ---------------------------------------------------------------------------------------

def _table(rows) -> None:
    for line in _table_lines(rows):
        print(line)


def _table_lines(rows) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]


def _task_lines(sessions: list[dict]) -> list[str]:
    rows = [("ID", "STATUS", "REPOSITORY", "BRANCH", "+/-", "PR", "TITLE")]
    for s in sessions:
        rows.append((s["id"], s["status"], s["repository"], s["work_branch"],
                     f"+{s['diff']['added']} -{s['diff']['removed']}", pr_column(s), s["title"][:50]))
    return _table_lines(rows)


def pr_column(s: dict) -> str:
    """`#7 open, checks failing, auto-fix` — or `-` without a pull request."""
    if not s.get("pr_url"):
        return "-"
    parts = [f"#{s['pr_number']} " if s.get("pr_number") else ""]
    parts[0] += s.get("pr_state") or "open"
    if s.get("pr_checks"):
        parts.append(f"checks {s['pr_checks']}")
    if s.get("autofix"):
        parts.append("auto-fix")
    return ", ".join(parts)


def _render_tasks(sessions: list[dict]) -> None:
    if not sessions:
        print("no sessions yet: start one with 'appliance remote \"TASK\"'")
        return
    for line in _task_lines(sessions):
        print(line)


def tasks(args, ctx) -> int:
    client = _client()
    params = {} if args.all else {"mine": "1"}
    if args.archived:
        params["archived"] = "1"
    if not args.json and sys.stdin.isatty() and sys.stdout.isatty():
        return _tasks_on_terminal(args, ctx, client, params)
    try:
        while True:
            sessions = client.get("/sessions", **params)["sessions"]
            if args.json:
                print(json.dumps(sessions, indent=2))
            else:
                if args.watch:
                    print("\033[H\033[2J", end="")
                _render_tasks(sessions)
            if not args.watch:
                return 0
            sys.stdout.flush()
            time.sleep(3)
    except KeyboardInterrupt:
        return 0


def _tasks_on_terminal(args, ctx, client, params) -> int:
    """The list with a cursor (appliance/client/picker.py); `t` teleports to the picked session."""
    from ..client import picker

    def load() -> list[dict]:
        return client.get("/sessions", **params)["sessions"]

    first = load()
    if not first:
        _render_tasks(first)
        return 0
    try:
        chosen = picker.pick(first, load, _task_lines, fd_in=sys.stdin.fileno(), out=sys.stdout,
                             refresh_every=3 if args.watch else None)
    except KeyboardInterrupt:
        return 0
    if chosen is None:
        return 0
    print(f"teleporting to {chosen['id']} ({chosen['title'][:50]})", file=sys.stderr)
    return teleport(argparse.Namespace(session=chosen["id"], stash=False), ctx)


def render_event(e: dict) -> str:
    d, kind = e.get("data") or {}, e.get("kind")
    if kind == "status":
        return f"· {d.get('status') or d.get('text', '')} {d.get('detail', '')}".rstrip()
    if kind == "log":
        return f"[{d.get('stream', 'log')}] {d.get('text', '')}"
    if kind == "message":
        return d.get("text", "")
    if kind == "user_message":
        return f"> {d.get('text', '')}"
    if kind == "tool_use":
        return f"⚙ {d.get('name', '')} {d.get('summary', '')}".rstrip()
    if kind == "tool_result":
        return f"  {'ok' if d.get('ok') else 'failed'} {d.get('name', '')}".rstrip()
    if kind == "command":
        return f"$ {d.get('command', '')}  (exit {d.get('exit_code')})"
    if kind == "error":
        return f"error: {d.get('message', '')}" + (f" ({d['hint']})" if d.get("hint") else "")
    if kind == "turn_result":
        return f"turn {'done' if d.get('ok') else 'failed'}: {d.get('summary') or d.get('error') or ''}".rstrip()
    return f"{kind}: {json.dumps(d, separators=(',', ':'))}"


def logs(args, ctx) -> int:
    client = _client()
    after, status = 0, None
    try:
        while True:
            settled = status in (*Status.FINAL, Status.IDLE)  # one more read without waiting, then stop
            got = client.get(f"/sessions/{args.session}/events", after=after,
                             wait=25 if args.follow and not settled else 0)
            for e in got["events"]:
                print(render_event(e), flush=True)
                after = e["id"]
            status = got["status"]
            if not args.follow or (settled and not got["events"]):
                break
    except KeyboardInterrupt:
        return 0
    if args.follow:
        print(f"session {args.session} is {status}", file=sys.stderr)
    return 0


def diff(args, ctx) -> int:
    d = _client().get(f"/sessions/{args.session}/diff")
    print(f"{d['base_branch']} → {d['work_branch']}: +{d['added']} -{d['removed']}, {len(d['files'])} files",
          file=sys.stderr)
    for f in d["files"]:
        if args.stat:
            print(f"{f['change']:<9} +{f['added']:<5} -{f['removed']:<5} {f['path']}")
        elif f["binary"]:
            print(f"Binary file {f['path']} {f['change']}")
        else:
            print(patch_header(f), end="")
            print(f["patch"], end="" if f["patch"].endswith("\n") else "\n")
    return 0


def patch_header(f: dict) -> str:
    """git's per-file header, so the output reads (and applies) like `git diff`."""
    old = f.get("old_path") or f["path"]
    return (f"diff --git a/{old} b/{f['path']}\n"
            f"--- {'/dev/null' if f['change'] == 'added' else 'a/' + old}\n"
            f"+++ {'/dev/null' if f['change'] == 'deleted' else 'b/' + f['path']}\n")


def pr(args, ctx) -> int:
    body = {k: v for k, v in (("title", args.title), ("body", args.body), ("autofix", args.autofix)) if v is not None}
    got = _client().post(f"/sessions/{args.session}/pr", body)
    print(got.get("url") or json.dumps(got))
    return 0


def message(args, ctx) -> int:
    client = _client()
    if not args.interrupt and not args.text:
        raise Invalid("say what to send", hint="appliance message ID TEXT, or --interrupt")
    if args.interrupt:
        got = client.post(f"/sessions/{args.session}/interrupt")
        print(f"interrupting turn {got['turn']} of {args.session}")
        if args.text:  # the next turn, once the interrupted one has ended
            _wait_not_running(client, args.session)
    if args.text:
        got = client.post(f"/sessions/{args.session}/messages", {"text": args.text})
        if got.get("steered"):
            print(f"sent to the running agent (turn {got['turn']} of {args.session})")
        else:
            print(f"queued as turn {got['turn']} of {args.session}")
    return 0


def _wait_not_running(client, session_id: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        turns = client.get(f"/sessions/{session_id}").get("turns") or []
        if not any(t.get("status") == "running" for t in turns):
            return
        time.sleep(1.0)
    raise ApplianceError(f"the turn of {session_id} is still stopping after {timeout:.0f} s",
                         hint="send the message again later, or 'appliance cancel' the session")


def cancel(args, ctx) -> int:
    got = _client().post(f"/sessions/{args.session}/cancel")
    print(f"{got['id']} {got['status']}")
    return 0


def archive(args, ctx) -> int:
    got = _client().post(f"/sessions/{args.session}/{'unarchive' if args.undo else 'archive'}")
    print(f"{got['id']} {'archived' if got.get('archived_at') else 'no longer archived'}")
    return 0


def delete(args, ctx) -> int:
    got = _client().delete(f"/sessions/{args.session}")
    print(f"deleted {got['deleted']}")
    return 0


def share(args, ctx) -> int:
    client = _client()
    got = client.post(f"/sessions/{args.session}/visibility", {"visibility": args.visibility})
    print(f"{got['id']} is {got['visibility']}: {client.console_url(got['id'])}")
    return 0


# -- teleport ---------------------------------------------------------------------------------------

def _pick(client, checkout) -> str:
    from ..client.git import normalize_url

    sessions = client.get("/sessions", mine="1")["sessions"]
    repos = {r["name"]: r for r in client.get("/repositories")["repositories"]}
    origin = normalize_url(checkout.origin_url())
    here = [s for s in sessions if s["repository"] in repos and normalize_url(repos[s["repository"]]["url"]) == origin]
    if not here:
        raise ApplianceError("you have no sessions on this checkout's repository",
                             hint="see 'appliance tasks', or start one with 'appliance remote'")
    if not sys.stdin.isatty():
        raise Invalid("no session id given and no terminal to pick one in", hint="appliance teleport SESSION_ID")
    for i, s in enumerate(here[:20], 1):
        print(f"{i:>2}. {s['id']}  {s['status']:<10} {s['work_branch']}  {s['title'][:50]}", file=sys.stderr)
    answer = input("teleport to which session? [1] ").strip() or "1"
    if not answer.isdigit() or not 1 <= int(answer) <= len(here[:20]):
        raise Invalid(f"no session number {answer!r}", hint="run it again and type one of the numbers")
    return here[int(answer) - 1]["id"]


def teleport(args, ctx) -> int:
    from ..client import teleport as tp
    from ..client.git import Checkout

    client = _client()
    checkout = Checkout(".")
    session_id = args.session or _pick(client, checkout)
    plan = tp.check(client, checkout, session_id)
    stash = args.stash
    others = [f for f in plan.failures if f.check != "clean"]
    if others:
        for f in plan.failures:
            print(f"error: {f.message}", file=sys.stderr)
            if f.hint:
                print(f"hint: {f.hint}", file=sys.stderr)
        print("nothing was changed", file=sys.stderr)
        return 1
    if plan.dirty and not stash:
        if sys.stdin.isatty():
            answer = input(f"{len(plan.dirty)} files have uncommitted changes; stash them and continue? [y/N] ")
            stash = answer.strip().lower() in ("y", "yes")
        if not stash:
            f = plan.failures[0]
            print(f"error: {f.message}", file=sys.stderr)
            print(f"hint: {f.hint}", file=sys.stderr)
            print("nothing was changed", file=sys.stderr)
            return 1
    tp.apply(client, checkout, plan, stash=stash, say=lambda s: print(s, file=sys.stderr))
    return 0


# -- ssh --------------------------------------------------------------------------------------------

def ssh(args, ctx) -> int:
    if not args.sandbox.startswith("ses-"):
        # a sandbox: the admin's direct shell on the server (appliance/cli/sandbox_cmd.py)
        from . import sandbox_cmd

        return sandbox_cmd.ssh(args, ctx)
    from ..client.terminal import attach

    return attach(_client(), args.sandbox)
