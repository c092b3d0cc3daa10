"""Merge requests of repositories the appliance hosts (`forge = "local"`): the list, one request with
its diff and what merging would do, merge and close.

Whoever may use the repository may read its requests; merging and closing are for admins and the
request's author (or, for a request without an author, the owner of the session whose work branch
it proposes). A repository the viewer may not use, or one without the local forge, does not exist
for them (404). Every POST is CSRF-checked here (this blueprint checks its own forms).
"""

from __future__ import annotations

from flask import Blueprint, flash, get_flashed_messages, redirect, render_template, url_for

from appliance.errors import Forbidden, NotFound
from appliance.forges import ForgeConfigError, ForgeError, MergeConflict, forge_for
from appliance.forges.base import CLOSED, MERGED, OPEN
from appliance.forges.models import MergeRequest
from appliance.repos.models import Repository
from appliance.sessions.access import may_use_repository, may_view, name_in_session
from appliance.sessions.models import Session

from ..app import services
from . import require_user
from .sessions import patch_rows

bp = Blueprint("console_merge_requests", __name__)

STATES = (OPEN, MERGED, CLOSED)
CHECK_TEXT = {
    "fast_forward": "can be merged: fast-forward",
    "merge": "can be merged: a merge commit",
    "conflict": "conflicts with the target branch",
    "up_to_date": "nothing to merge: the target already has every commit",
}


# --- lookups --------------------------------------------------------------------------------------

def _forge(user, name: str):
    """The repository `name` and its local forge; 404 unless `user` may use it and it has one."""
    repo = Repository.get_or_none(Repository.name == name)
    if repo is None or not may_use_repository(user, repo) or (repo.forge or "").strip().lower() != "local":
        raise NotFound(f"no merge requests in {name}")
    try:
        return repo, forge_for(repo, state_dir=services().config.state_dir)
    except ForgeConfigError as e:
        raise NotFound(f"no merge requests in {name}", hint=e.message) from None


def _request(user, name: str, number: int):
    repo, forge = _forge(user, name)
    return repo, forge, forge.get(number)  # ForgeNotFound is a NotFound: 404


def source_session(repo: Repository, mr: MergeRequest) -> Session | None:
    """The session whose work branch the request proposes, if any."""
    return Session.get_or_none((Session.repository == repo.id) & (Session.work_branch == mr.source_branch))


def author_name(user, repo: Repository, mr: MergeRequest) -> str | None:
    """The author as `user` may see them: not the source session's owner who hid their name."""
    if mr.author_id is None:
        return None
    return name_in_session(user, source_session(repo, mr), mr.author)


def may_decide(user, repo: Repository, mr: MergeRequest) -> bool:
    """Merge or close: admins and the author; with no author, the owner of the source session."""
    if user.is_admin:
        return True
    if mr.author_id is not None:
        return mr.author_id == user.id
    s = source_session(repo, mr)
    return s is not None and s.owner_id == user.id


def _decider(name: str, number: int):
    user = require_user()
    repo, forge, mr = _request(user, name, number)
    if not may_decide(user, repo, mr):
        raise Forbidden("only the merge request's author (or an admin) can do that", hint="ask the author")
    return user, forge, mr


def _back(name: str, number: int):
    return redirect(url_for("console_merge_requests.show", name=name, number=number))


# --- pages ----------------------------------------------------------------------------------------

@bp.get("/repos/<path:name>/merge_requests")
def index(name):
    user = require_user()
    repo, forge = _forge(user, name)
    requests = forge.merge_requests()
    requests.sort(key=lambda mr: (mr.state != OPEN, -mr.id))  # open first, newest first
    return render_template("console/merge_requests.html", repo=repo, requests=requests, user=user,
                           author_of=lambda mr: author_name(user, repo, mr))


@bp.get("/repos/<path:name>/merge_requests/<int:number>")
def show(name, number):
    user = require_user()
    repo, forge, mr = _request(user, name, number)
    s = source_session(repo, mr)
    files, diff, diff_error, check, check_error = [], None, None, None, None
    try:
        diff = forge.diff(mr)
        files = diff.files
    except ForgeError as e:
        diff_error = e.message
    if mr.state == OPEN:
        try:
            check = forge.check_merge(mr)
        except ForgeError as e:
            check_error = e.message
    return render_template("console/merge_request.html", repo=repo, mr=mr, files=files, diff=diff,
                           diff_error=diff_error, rows={f.path: patch_rows(f.patch) for f in files if not f.binary},
                           check=check, check_text=CHECK_TEXT, check_error=check_error,
                           session=s if s is not None and may_view(user, s) else None,
                           can_decide=may_decide(user, repo, mr), user=user, author=author_name(user, repo, mr),
                           merged_by=name_in_session(user, s, mr.merged_by) if mr.merged_by_id else None,
                           messages=get_flashed_messages(with_categories=True))


@bp.post("/repos/<path:name>/merge_requests/<int:number>/merge")
def merge(name, number):
    user, forge, mr = _decider(name, number)
    try:
        merged = forge.merge(mr, user)
        flash(f"Merged !{merged.id} into {merged.target_branch} ({(merged.merge_commit_sha or '')[:12]}).", "ok")
    except MergeConflict as e:
        flash(f"Not merged: {e.message}. {e.hint}", "error")
    except ForgeError as e:
        flash(f"Not merged: {e.message}" + (f". {e.hint}" if e.hint else ""), "error")
    return _back(name, number)


@bp.post("/repos/<path:name>/merge_requests/<int:number>/close")
def close(name, number):
    user, forge, mr = _decider(name, number)
    try:
        forge.close(mr)
        flash(f"Closed !{mr.id}; its branch {mr.source_branch} stays.", "ok")
    except ForgeError as e:
        flash(f"Not closed: {e.message}", "error")
    return _back(name, number)
