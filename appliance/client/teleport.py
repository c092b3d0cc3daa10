"""Teleport: continue a remote session in the local checkout.

The reference's four checks run first, all of them read-only: clean working tree, same repository
(not a fork), the session branch on origin, same account. When one fails, its message is printed
and nothing at all is changed (a dirty tree may be stashed, but only when the person agrees and
every other check passed). Then: fetch + check out the work branch, and install the session's
Claude Code transcript where `claude --resume <id>` run in this checkout finds it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..agents import transcript as transcript_mod
from ..errors import ApplianceError, NotFound
from .api import Client
from .context import claude_config_dir
from .git import Checkout, normalize_url


@dataclass
class Failure:
    check: str  # clean | repository | branch | account
    message: str
    hint: str = ""


@dataclass
class Plan:
    session: dict
    repository: dict | None
    me: dict
    failures: list[Failure] = field(default_factory=list)
    dirty: list[str] = field(default_factory=list)


class TeleportRefused(ApplianceError):
    exit_code = 1


def check(client: Client, checkout: Checkout, session_id: str) -> Plan:
    """Run the four checks; changes nothing."""
    session = client.get(f"/sessions/{session_id}")
    me = client.get("/me")
    repos = client.get("/repositories")["repositories"]
    repo = next((r for r in repos if r["name"] == session["repository"]), None)
    plan = Plan(session=session, repository=repo, me=me)

    dirty = checkout.dirty_files()
    if dirty:
        plan.dirty = dirty
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        plan.failures.append(Failure("clean", f"the working tree has uncommitted changes ({shown})",
                                     "commit or stash them (or pass --stash), then teleport again"))

    origin = checkout.origin_url()
    if repo is None or normalize_url(origin) != normalize_url(repo["url"]):
        where = repo["url"] if repo else f"repository {session['repository']}"
        plan.failures.append(Failure("repository",
                                     f"this checkout's origin ({origin}) is not the session's repository ({where})",
                                     "teleport from a clone of that repository, not from a fork or another project"))
        branch_on_origin = None
    else:
        branch_on_origin = checkout.remote_head(session["work_branch"])
        if branch_on_origin is None:
            plan.failures.append(Failure("branch", f"the session's branch {session['work_branch']!r} is not on origin yet",
                                         "wait until the session has pushed (see 'appliance logs "
                                         f"{session['id']}'), then teleport again"))

    if session.get("owner") != me.get("username"):
        plan.failures.append(Failure("account",
                                     f"session {session['id']} belongs to another account than the one you are "
                                     f"logged in as ({me.get('username')})",
                                     "log in as the session's owner ('appliance login URL'), or start your own session"))
    return plan


def apply(client: Client, checkout: Checkout, plan: Plan, stash: bool, say: Callable[[str], None] = print,
          claude_config: Path | None = None) -> Path | None:
    """After `check`: stash if agreed, fetch + check out the branch, install the transcript.
    Returns the installed transcript's path (None when the session has none)."""
    session = plan.session
    blocking = [f for f in plan.failures if f.check != "clean" or not stash]
    if blocking:
        raise TeleportRefused(blocking[0].message, hint=blocking[0].hint)
    # Everything that may fail remotely happens before the first local change.
    try:
        got = client.get(f"/sessions/{session['id']}/transcript")
    except NotFound:
        got = None
    checkout.fetch_branch(session["work_branch"])
    if plan.dirty:
        checkout.stash(f"appliance teleport {session['id']}")
        say("stashed your changes ('git stash pop' brings them back)")
    checkout.checkout_branch(session["work_branch"])
    say(f"checked out {session['work_branch']}")
    if not got or not got.get("transcript") or not got.get("agent_session_id"):
        say("this session has no Claude Code transcript to resume: the branch is all there is")
        return None
    if got.get("agent") not in (None, "claude-code"):
        say(f"the session ran {got['agent']}: its transcript cannot be resumed by Claude Code")
        return None
    config = claude_config or claude_config_dir()
    path = transcript_mod.install(got["transcript"].encode(), config, str(checkout.root), got["agent_session_id"])
    say(f"installed the conversation: {path}")
    hint = f"claude --resume {got['agent_session_id']}"
    if Path(os.getcwd()).resolve() != checkout.root:
        hint = f"cd {checkout.root} && {hint}"
    say(f"continue it with: {hint}")
    return path
