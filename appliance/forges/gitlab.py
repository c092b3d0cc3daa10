"""GitLab merge requests, REST API v4.

- create: `POST {api}/projects/{url-encoded group/project}/merge_requests`
  {source_branch, target_branch, title, description} with `PRIVATE-TOKEN` -> 201
- already open for the branch: 409 `{"message": ["Another open merge request already exists for this
  source branch: !N"]}` -> the existing one is looked up with
  `GET .../merge_requests?source_branch=…&target_branch=…&state=opened`
- branch not on GitLab: 400 `{"message": {"source_branch": ["does not exist"]}}`
- unknown project, or one the token cannot see: 404 `{"message": "404 Project Not Found"}`

The API is `forge_api_url` when set; else https://gitlab.com/api/v4 for gitlab.com repositories and
`https://<host>/api/v4` for a self-managed GitLab at any other host. GitLab numbers a merge request
twice: `iid` (per project, in its URL) is the number used here, never the global `id`.
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
    PullRequest,
    ReviewNote,
    check_request,
    error_message,
    git_url_host,
    project_path,
    repository_token,
    segment,
)

PUBLIC_API = "https://gitlab.com/api/v4"
STATES = {"opened": OPEN, "locked": OPEN, "merged": MERGED, "closed": CLOSED}


def default_api_url(git_url: str) -> str:
    host = git_url_host(git_url).lower()
    if host in ("", "gitlab.com", "www.gitlab.com"):
        return PUBLIC_API
    return f"https://{host}/api/v4"


class GitLabForge(Forge):
    kind = "gitlab"

    def __init__(self, repository, *, timeout: float = DEFAULT_TIMEOUT):
        token = repository_token(repository, "GitLab")
        self.project = project_path(repository, "GitLab", max_segments=None)  # groups nest
        api = repository.forge_api_url.strip() or default_api_url(repository.url)
        self.client = ApiClient("GitLab", api, {"PRIVATE-TOKEN": token}, secret=token, timeout=timeout)

    def __repr__(self) -> str:
        return f"GitLabForge({self.project} at {self.client.api_url})"

    @property
    def _base(self) -> str:
        return f"/projects/{segment(self.project)}"

    def create_pull_request(self, head: str, base: str, title: str, body: str = "", *,
                            author=None) -> PullRequest:
        check_request(head, base, title)
        try:
            resp = self.client.request("POST", f"{self._base}/merge_requests", accept=(400, 409, 422), body={
                "source_branch": head, "target_branch": base, "title": title, "description": body or ""})
        except ForgeNotFound as e:
            raise ForgeNotFound(f"GitLab: project {self.project} not found (or the token cannot see it)",
                                hint="check the repository's forge project and the token's access") from e
        if resp.status in (200, 201):
            return self._merge_request(resp.data)
        message = resp.data.get("message") if isinstance(resp.data, dict) else None
        if resp.status == 409 and "already exists" in error_message(resp).lower():
            existing = self._find_open(head, base)
            if existing:
                return existing
        if isinstance(message, dict):
            for field, branch in (("source_branch", head), ("target_branch", base)):
                if any("does not exist" in str(m) for m in message.get(field) or []):
                    raise BranchNotFound(f"GitLab: branch {branch!r} is not in {self.project}",
                                         hint="push the branch first (or check its name)")
        raise ForgeError(f"GitLab refused the merge request ({resp.status}: {error_message(resp)})",
                         hint="see GitLab's message")

    def _find_open(self, head: str, base: str) -> PullRequest | None:
        resp = self.client.request("GET", f"{self._base}/merge_requests",
                                   query={"source_branch": head, "target_branch": base, "state": "opened"})
        if isinstance(resp.data, list) and resp.data:
            return dataclasses.replace(self._merge_request(resp.data[0]), created=False)
        return None

    def get_pull_request(self, number: int) -> PullRequest:
        return self._merge_request(self.client.request("GET", f"{self._base}/merge_requests/{int(number)}").data)

    def pull_request_checks(self, number: int) -> list[Check]:
        pipelines = self.client.request("GET", f"{self._base}/merge_requests/{int(number)}/pipelines").data
        if not isinstance(pipelines, list) or not pipelines:
            return []
        latest = pipelines[0]  # newest first
        states = {"success": "passing", "skipped": "passing", "failed": "failing", "canceled": "failing"}
        return [Check("pipeline", states.get(latest.get("status"), "pending"), str(latest.get("web_url") or ""))]

    def review_notes(self, number: int) -> list[ReviewNote]:
        found = self.client.request("GET", f"{self._base}/merge_requests/{int(number)}/discussions",
                                    query={"per_page": 100}).data
        notes = []
        for discussion in found if isinstance(found, list) else []:
            for n in discussion.get("notes") or []:
                if n.get("system"):  # "added 1 commit", label changes: not people
                    continue
                pos = n.get("position") or {}
                notes.append(ReviewNote(str(n["id"]), str(discussion.get("id") or ""),
                                        str((n.get("author") or {}).get("username") or ""), str(n.get("body") or ""),
                                        str(pos.get("new_path") or ""), pos.get("new_line")))
        return notes

    def reply_to_review(self, number: int, thread: str, body: str) -> None:
        mr = f"{self._base}/merge_requests/{int(number)}"
        if thread:
            self.client.request("POST", f"{mr}/discussions/{segment(thread)}/notes", body={"body": body})
        else:
            self.client.request("POST", f"{mr}/notes", body={"body": body})

    def comment_on_issue(self, number: int, body: str) -> None:
        self.client.request("POST", f"{self._base}/issues/{int(number)}/notes", body={"body": body})

    @staticmethod
    def _merge_request(data) -> PullRequest:
        try:
            return PullRequest(url=str(data["web_url"]), number=int(data["iid"]),
                               state=STATES.get(data.get("state"), CLOSED))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ForgeError("GitLab answered with something that is not a merge request",
                             hint="check the repository's forge API URL") from None
