"""Each forge's webhook payloads, as the few facts the loop acts on.

Shapes are the forges' documented ones: GitHub (`pull_request`, `check_run`,
`pull_request_review_comment`, `issue_comment`, `issues`), Gitea (`pull_request`, `status`,
`pull_request_review_comment`, `issue_comment`, `issues`), GitLab (`Merge Request Hook`,
`Pipeline Hook`, `Job Hook`, `Note Hook`, `Issue Hook`). Anything else (pings, pushes, …) gives no
facts. Malformed payloads raise BadPayload (the webhook answers 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..forges.github import GITHUB_FAILED

REPLY_MARK = "<!-- appliance:reply -->"  # in every comment the appliance writes on a forge
MAX_EXCERPT = 4000  # characters of a check's log excerpt put into a turn (its end: where errors are)


class BadPayload(ValueError):
    pass


@dataclass(frozen=True)
class PrState:
    branch: str
    number: int
    state: str  # open | merged | closed
    url: str


@dataclass(frozen=True)
class CheckResult:
    name: str
    state: str  # passing | failing | pending
    excerpt: str = ""
    branch: str = ""
    sha: str = ""
    numbers: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReviewComment:
    forge_id: str
    thread: str
    login: str
    body: str
    path: str = ""
    line: int | None = None
    branch: str = ""
    number: int | None = None


@dataclass(frozen=True)
class IssueTask:
    number: int
    title: str
    body: str
    login: str
    trigger: str  # label | comment
    task: str = ""  # for a comment: what follows @appliance


def bounded(text: str, limit: int = MAX_EXCERPT) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else "…" + text[-limit:]


_MENTION = re.compile(r"^[ \t]*@appliance(?![\w-])(.*)", re.I | re.M | re.S)


def mention_task(body: str) -> str | None:
    """`@appliance <task>` at the start of a line: the task ("" with nothing after it); else None."""
    found = _MENTION.search(body or "")
    return found.group(1).strip() if found else None


def _get(data: Any, *path, default=None):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _login(user: Any) -> str:
    return str(_get(user, "login", default="") or _get(user, "username", default="") or "")


STATUS_STATES = {"success": "passing", "pending": "pending", "failure": "failing", "error": "failing",
                "warning": "passing"}
GITLAB_STATES = {"success": "passing", "failed": "failing", "canceled": "failing", "skipped": "passing",
                 "manual": "pending"}  # every other status (created, pending, running, …) is pending
GITLAB_MR_STATES = {"opened": "open", "locked": "open", "merged": "merged", "closed": "closed"}


def parse(forge: str, event: str, payload: Any) -> list:
    if not isinstance(payload, dict):
        raise BadPayload("the payload is not a JSON object")
    try:
        if forge == "github":
            return _github(event, payload)
        if forge == "gitea":
            return _gitea(event, payload)
        if forge == "gitlab":
            return _gitlab(event, payload)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadPayload(f"a {forge} {event!r} payload without the expected fields ({e})") from None
    raise BadPayload(f"unknown forge {forge!r}")


def _pr_state(pr: dict) -> PrState:
    state = "merged" if pr.get("merged") or pr.get("merged_at") else ("open" if pr["state"] == "open" else "closed")
    return PrState(branch=pr["head"]["ref"], number=int(pr["number"]), state=state, url=str(pr.get("html_url", "")))


def _issue_facts(payload: dict, is_pull: bool, label_added: str | None) -> list:
    """issue_comment / issues, shared by GitHub and Gitea (the same shapes)."""
    issue, action = payload["issue"], payload.get("action")
    if "comment" in payload:
        if action != "created":
            return []
        comment = payload["comment"]
        login, body = _login(comment.get("user") or payload.get("sender")), str(comment.get("body") or "")
        if is_pull:
            return [ReviewComment(forge_id=str(comment["id"]), thread="", login=login, body=body,
                                  number=int(issue["number"]))]
        task = mention_task(body) if REPLY_MARK not in body else None  # never the appliance's own
        if task is None:
            return []
        return [IssueTask(number=int(issue["number"]), title=str(issue.get("title") or ""),
                          body=str(issue.get("body") or ""), login=login, trigger="comment", task=task)]
    if label_added is None or is_pull:
        return []
    return [IssueTask(number=int(issue["number"]), title=str(issue.get("title") or ""),
                      body=str(issue.get("body") or ""), login=_login(payload.get("sender")), trigger="label",
                      task=label_added)]


def _commit_status(p: dict) -> list:
    """A commit status (GitHub's and Gitea's `status` event, the same shape)."""
    return [CheckResult(name=str(p.get("context") or "status"), state=STATUS_STATES.get(p.get("state"), "pending"),
                        excerpt=bounded(str(p.get("description") or "") + (
                            f"\n{p['target_url']}" if p.get("target_url") else "")),
                        sha=str(p.get("sha") or ""))]


def _github(event: str, p: dict) -> list:
    if event == "status":
        return _commit_status(p)
    if event == "pull_request":
        return [_pr_state(p["pull_request"])]
    if event == "check_run":
        run = p["check_run"]
        if run.get("status") != "completed":
            state = "pending"
        else:
            state = "failing" if run.get("conclusion") in GITHUB_FAILED else "passing"
        out = run.get("output") or {}
        excerpt = "\n".join(str(out.get(k) or "") for k in ("title", "summary", "text") if out.get(k))
        return [CheckResult(name=str(run["name"]), state=state, excerpt=bounded(excerpt),
                            branch=str(_get(run, "check_suite", "head_branch", default="") or ""),
                            sha=str(run.get("head_sha") or ""),
                            numbers=tuple(int(pr["number"]) for pr in run.get("pull_requests") or []))]
    if event == "pull_request_review_comment":
        if p.get("action") != "created":
            return []
        c, pr = p["comment"], p["pull_request"]
        return [ReviewComment(forge_id=str(c["id"]), thread=str(c.get("in_reply_to_id") or c["id"]),
                              login=_login(c.get("user")), body=str(c.get("body") or ""), path=str(c.get("path") or ""),
                              line=c.get("line") or c.get("original_line"), branch=pr["head"]["ref"],
                              number=int(pr["number"]))]
    if event == "issue_comment":
        return _issue_facts(p, "pull_request" in p["issue"], None)
    if event == "issues":
        label = _get(p, "label", "name") if p.get("action") == "labeled" else None
        return _issue_facts(p, False, label)
    return []


def _gitea(event: str, p: dict) -> list:
    if event == "pull_request":
        return [_pr_state(p["pull_request"])]
    if event == "status":
        return _commit_status(p)
    if event == "pull_request_review_comment":
        review, pr = p.get("review") or {}, p["pull_request"]
        return [ReviewComment(forge_id=f"review-{pr['number']}-{p.get('_delivery', '')}", thread="",
                              login=_login(p.get("sender")), body=str(review.get("content") or ""),
                              branch=pr["head"]["ref"], number=int(pr["number"]))]
    if event == "issue_comment":
        return _issue_facts(p, bool(p.get("is_pull")), None)
    if event == "issues":
        labels = [str(label.get("name")) for label in p["issue"].get("labels") or []]
        added = p.get("label", {}).get("name") if isinstance(p.get("label"), dict) else None
        if p.get("action") in ("label_updated", "labeled", "opened"):
            return _issue_facts(p, False, added or ",".join(labels))
        return []
    return []


def _gitlab(event: str, p: dict) -> list:
    attrs = p.get("object_attributes") or {}
    if event == "Merge Request Hook":
        return [PrState(branch=attrs["source_branch"], number=int(attrs["iid"]),
                        state=GITLAB_MR_STATES.get(attrs.get("state"), "closed"), url=str(attrs.get("url") or ""))]
    if event == "Pipeline Hook":
        numbers = (int(p["merge_request"]["iid"]),) if isinstance(p.get("merge_request"), dict) else ()
        where = dict(branch=str(attrs.get("ref") or ""), sha=str(attrs.get("sha") or ""), numbers=numbers)
        builds = [b for b in p.get("builds") or [] if isinstance(b, dict)]
        if not builds:
            return [CheckResult(name="pipeline", state=GITLAB_STATES.get(attrs.get("status"), "pending"), **where)]
        return [CheckResult(name=str(b["name"]), state=GITLAB_STATES.get(b.get("status"), "pending"),
                            excerpt=bounded(str(b.get("failure_reason") or "")), **where) for b in builds]
    if event == "Job Hook":
        return [CheckResult(name=str(p["build_name"]), state=GITLAB_STATES.get(p.get("build_status"), "pending"),
                            excerpt=bounded(str(p.get("build_failure_reason") or "")), branch=str(p.get("ref") or ""),
                            sha=str(p.get("sha") or ""))]
    if event == "Note Hook":
        login, body = _login(p.get("user")), str(attrs.get("note") or "")
        if attrs.get("noteable_type") == "MergeRequest":
            mr, pos = p["merge_request"], attrs.get("position") or {}
            return [ReviewComment(forge_id=str(attrs["id"]), thread=str(attrs.get("discussion_id") or ""), login=login,
                                  body=body, path=str(pos.get("new_path") or ""), line=pos.get("new_line"),
                                  branch=str(mr.get("source_branch") or ""), number=int(mr["iid"]))]
        if attrs.get("noteable_type") == "Issue":
            task = mention_task(body) if REPLY_MARK not in body else None
            if task is None:
                return []
            issue = p["issue"]
            return [IssueTask(number=int(issue["iid"]), title=str(issue.get("title") or ""),
                              body=str(issue.get("description") or ""), login=login, trigger="comment", task=task)]
        return []
    if event == "Issue Hook":
        now = [str(label.get("title")) for label in p.get("labels") or [] if isinstance(label, dict)]
        before = [str(label.get("title")) for label in _get(p, "changes", "labels", "previous", default=[]) or []]
        added = [t for t in now if t not in before]
        if not added:
            return []
        return [IssueTask(number=int(attrs["iid"]), title=str(attrs.get("title") or ""),
                          body=str(attrs.get("description") or ""), login=_login(p.get("user")), trigger="label",
                          task=",".join(added))]
    return []
