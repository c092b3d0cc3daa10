"""GitHub (and GitHub Enterprise Server) pull requests, REST API v3.

- create: `POST {api}/repos/{owner}/{repo}/pulls` {title, head, base, body} -> 201
- already open for the branch: 422 `Validation Failed` with an error message "A pull request already
  exists for owner:branch." -> the existing one is looked up with
  `GET {api}/repos/{owner}/{repo}/pulls?head={owner}:{branch}&state=open`
- branch not on GitHub: 422 with `{"field": "head"|"base", "code": "invalid"}`
- nothing to propose: 422 "No commits between base and head"
- unknown repository, or one the token cannot see: 404

The API is `forge_api_url` when set; else https://api.github.com for github.com repositories and
`https://<host>/api/v3` (the GitHub Enterprise Server convention) for any other host.
"""

from __future__ import annotations

import dataclasses

from .base import (
    CLOSED,
    DEFAULT_TIMEOUT,
    MERGED,
    OPEN,
    ApiClient,
    BranchNotFound,
    Check,
    Forge,
    ForgeError,
    ForgeNotFound,
    NothingToMerge,
    PullRequest,
    ReviewNote,
    check_request,
    error_message,
    git_url_host,
    project_path,
    repository_token,
    segment,
)

PUBLIC_API = "https://api.github.com"
API_VERSION = "2022-11-28"
GITHUB_FAILED = ("failure", "timed_out", "cancelled", "action_required", "startup_failure", "stale")


def default_api_url(git_url: str) -> str:
    host = git_url_host(git_url).lower()
    if host in ("", "github.com", "www.github.com"):
        return PUBLIC_API
    return f"https://{host}/api/v3"


class GitHubForge(Forge):
    kind = "github"

    def __init__(self, repository, *, timeout: float = DEFAULT_TIMEOUT):
        token = repository_token(repository, "GitHub")
        self.owner, self.repo = project_path(repository, "GitHub").split("/")
        api = repository.forge_api_url.strip() or default_api_url(repository.url)
        self.client = ApiClient("GitHub", api, {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }, secret=token, timeout=timeout)

    def __repr__(self) -> str:
        return f"GitHubForge({self.owner}/{self.repo} at {self.client.api_url})"

    @property
    def _base(self) -> str:
        return f"/repos/{segment(self.owner)}/{segment(self.repo)}"

    def create_pull_request(self, head: str, base: str, title: str, body: str = "", *,
                            author=None) -> PullRequest:
        check_request(head, base, title)
        try:
            resp = self.client.request("POST", f"{self._base}/pulls", accept=(422,),
                                       body={"title": title, "head": head, "base": base, "body": body or ""})
        except ForgeNotFound as e:
            raise ForgeNotFound(f"GitHub: repository {self.owner}/{self.repo} not found (or the token cannot see it)",
                                hint="check the repository's forge project and the token's repository access") from e
        if resp.status in (200, 201):
            return self._pull_request(resp.data)
        errors = [e for e in (resp.data or {}).get("errors") or [] if isinstance(e, dict)] \
            if isinstance(resp.data, dict) else []
        messages = " ".join(str(e.get("message", "")) for e in errors).lower()
        if "already exists" in messages:
            existing = self._find_open(head)
            if existing:
                return existing
        for err in errors:
            if err.get("code") == "invalid" and err.get("field") in ("head", "base"):
                branch = head if err["field"] == "head" else base
                raise BranchNotFound(f"GitHub: branch {branch!r} is not on {self.owner}/{self.repo}",
                                     hint="push the branch first (or check its name)")
        if "no commits between" in messages:
            raise NothingToMerge(f"GitHub: {head} has no commits that {base} does not already have",
                                 hint="commit and push something to propose first")
        raise ForgeError(f"GitHub refused the pull request ({resp.status}: {error_message(resp)})",
                         hint="see GitHub's message")

    def _find_open(self, head: str) -> PullRequest | None:
        resp = self.client.request("GET", f"{self._base}/pulls",
                                   query={"head": f"{self.owner}:{head}", "state": "open"})
        if isinstance(resp.data, list) and resp.data:
            return dataclasses.replace(self._pull_request(resp.data[0]), created=False)
        return None

    def get_pull_request(self, number: int) -> PullRequest:
        return self._pull_request(self.client.request("GET", f"{self._base}/pulls/{int(number)}").data)

    def pull_request_checks(self, number: int) -> list[Check]:
        pr = self.client.request("GET", f"{self._base}/pulls/{int(number)}").data
        sha = str(((pr or {}).get("head") or {}).get("sha") or "") if isinstance(pr, dict) else ""
        if not sha:
            return []
        runs = self.client.request("GET", f"{self._base}/commits/{segment(sha)}/check-runs").data
        checks = []
        for run in (runs or {}).get("check_runs") or [] if isinstance(runs, dict) else []:
            if run.get("status") != "completed":
                state = "pending"
            else:
                state = "failing" if run.get("conclusion") in GITHUB_FAILED else "passing"
            out = run.get("output") or {}
            excerpt = "\n".join(str(out.get(k)) for k in ("title", "summary", "text") if out.get(k))
            checks.append(Check(str(run.get("name") or "check"), state, excerpt))
        return checks

    def review_notes(self, number: int) -> list[ReviewNote]:
        notes = []
        review = self.client.request("GET", f"{self._base}/pulls/{int(number)}/comments", query={"per_page": 100}).data
        for c in review if isinstance(review, list) else []:
            notes.append(ReviewNote(str(c["id"]), str(c.get("in_reply_to_id") or c["id"]),
                                    str((c.get("user") or {}).get("login") or ""), str(c.get("body") or ""),
                                    str(c.get("path") or ""), c.get("line") or c.get("original_line")))
        talk = self.client.request("GET", f"{self._base}/issues/{int(number)}/comments", query={"per_page": 100}).data
        for c in talk if isinstance(talk, list) else []:
            notes.append(ReviewNote(str(c["id"]), "", str((c.get("user") or {}).get("login") or ""),
                                    str(c.get("body") or "")))
        return notes

    def reply_to_review(self, number: int, thread: str, body: str) -> None:
        if thread:
            self.client.request("POST", f"{self._base}/pulls/{int(number)}/comments/{segment(thread)}/replies",
                                body={"body": body})
        else:
            self.comment_on_issue(number, body)

    def comment_on_issue(self, number: int, body: str) -> None:
        self.client.request("POST", f"{self._base}/issues/{int(number)}/comments", body={"body": body})

    @staticmethod
    def _pull_request(data) -> PullRequest:
        try:
            state = MERGED if data.get("merged_at") or data.get("merged") else (
                OPEN if data["state"] == "open" else CLOSED)
            return PullRequest(url=str(data["html_url"]), number=int(data["number"]), state=state)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ForgeError("GitHub answered with something that is not a pull request",
                             hint="check the repository's forge API URL") from None

