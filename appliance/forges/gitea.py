"""Gitea (and Forgejo) pull requests, REST API v1.

- create: `POST {api}/repos/{owner}/{repo}/pulls` {head, base, title, body} with
  `Authorization: token <t>` -> 201
- already open for the branch: 409 `{"message": "pull request already exists for these targets
  [id: …, issue_id: N, …]"}` -> `GET .../pulls/N` (issue_id is the pull request's number); when the
  message cannot be read, the open pull requests are listed and matched by head and base
- a branch (or the repository) not on Gitea: 404 `{"message": "The target couldn't be found."}` ->
  asking for the repository and the head branch tells which
- nothing to propose: 422 "There are no changes between the head and the base"

There is no public Gitea: `forge_api_url` (e.g. https://gitea.example/api/v1) is required.
"""

from __future__ import annotations

import dataclasses
import re

from .base import (
    CLOSED,
    DEFAULT_TIMEOUT,
    MERGED,
    OPEN,
    ApiClient,
    BranchNotFound,
    Check,
    Forge,
    ForgeConfigError,
    ForgeError,
    ForgeNotFound,
    NothingToMerge,
    PullRequest,
    ReviewNote,
    check_request,
    error_message,
    project_path,
    repository_token,
    segment,
)

_EXISTING = re.compile(r"issue_id:\s*(\d+)")


class GiteaForge(Forge):
    kind = "gitea"

    def __init__(self, repository, *, timeout: float = DEFAULT_TIMEOUT):
        if not repository.forge_api_url.strip():
            raise ForgeConfigError(f"repository {repository.name}: Gitea needs the forge API URL",
                                   hint="set the repository's forge API URL, e.g. https://gitea.example/api/v1")
        token = repository_token(repository, "Gitea")
        self.owner, self.repo = project_path(repository, "Gitea").split("/")
        self.client = ApiClient("Gitea", repository.forge_api_url.strip(), {"Authorization": f"token {token}"},
                                secret=token, timeout=timeout)

    def __repr__(self) -> str:
        return f"GiteaForge({self.owner}/{self.repo} at {self.client.api_url})"

    @property
    def _base(self) -> str:
        return f"/repos/{segment(self.owner)}/{segment(self.repo)}"

    def create_pull_request(self, head: str, base: str, title: str, body: str = "", *,
                            author=None) -> PullRequest:
        check_request(head, base, title)
        resp = self.client.request("POST", f"{self._base}/pulls", accept=(404, 409, 422),
                                   body={"head": head, "base": base, "title": title, "body": body or ""})
        if resp.status in (200, 201):
            return self._pull_request(resp.data)
        message = error_message(resp)
        if resp.status == 409 and "already exists" in message.lower():
            existing = self._find_open(head, base, message)
            if existing:
                return existing
        if resp.status == 404:
            raise self._what_is_missing(head, base)
        if resp.status == 422 and "no changes" in message.lower():
            raise NothingToMerge(f"Gitea: {head} has no changes that {base} does not already have",
                                 hint="commit and push something to propose first")
        raise ForgeError(f"Gitea refused the pull request ({resp.status}: {message})", hint="see Gitea's message")

    def _find_open(self, head: str, base: str, message: str) -> PullRequest | None:
        m = _EXISTING.search(message)
        if m:
            try:
                return dataclasses.replace(self.get_pull_request(int(m.group(1))), created=False)
            except ForgeNotFound:
                pass
        resp = self.client.request("GET", f"{self._base}/pulls", query={"state": "open", "limit": 50})
        for data in resp.data if isinstance(resp.data, list) else []:
            try:
                if data["head"]["ref"] == head and data["base"]["ref"] == base:
                    return dataclasses.replace(self._pull_request(data), created=False)
            except (KeyError, TypeError):
                continue
        return None

    def _what_is_missing(self, head: str, base: str) -> ForgeError:
        if self.client.request("GET", self._base, accept=(404,)).status == 404:
            return ForgeNotFound(f"Gitea: repository {self.owner}/{self.repo} not found (or the token cannot see it)",
                                 hint="check the repository's forge project and the token's access")
        missing = head
        if self.client.request("GET", f"{self._base}/branches/{segment(head)}", accept=(404,)).status != 404:
            missing = base
        return BranchNotFound(f"Gitea: branch {missing!r} is not on {self.owner}/{self.repo}",
                              hint="push the branch first (or check its name)")

    def get_pull_request(self, number: int) -> PullRequest:
        return self._pull_request(self.client.request("GET", f"{self._base}/pulls/{int(number)}").data)

    def pull_request_checks(self, number: int) -> list[Check]:
        pr = self.client.request("GET", f"{self._base}/pulls/{int(number)}").data
        sha = str(((pr or {}).get("head") or {}).get("sha") or "") if isinstance(pr, dict) else ""
        if not sha:
            return []
        combined = self.client.request("GET", f"{self._base}/commits/{segment(sha)}/status").data
        states = {"success": "passing", "warning": "passing", "failure": "failing", "error": "failing"}
        return [Check(str(s.get("context") or "status"), states.get(s.get("status") or s.get("state"), "pending"),
                      str(s.get("description") or ""))
                for s in ((combined or {}).get("statuses") or [] if isinstance(combined, dict) else [])]

    def review_notes(self, number: int) -> list[ReviewNote]:
        talk = self.client.request("GET", f"{self._base}/issues/{int(number)}/comments").data
        return [ReviewNote(str(c["id"]), "", str((c.get("user") or {}).get("login") or ""), str(c.get("body") or ""))
                for c in (talk if isinstance(talk, list) else [])]

    def reply_to_review(self, number: int, thread: str, body: str) -> None:
        self.comment_on_issue(number, body)  # Gitea's API has no reply to a review thread

    def comment_on_issue(self, number: int, body: str) -> None:
        self.client.request("POST", f"{self._base}/issues/{int(number)}/comments", body={"body": body})

    @staticmethod
    def _pull_request(data) -> PullRequest:
        try:
            state = MERGED if data.get("merged") else (OPEN if data["state"] == "open" else CLOSED)
            return PullRequest(url=str(data["html_url"]), number=int(data["number"]), state=state)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ForgeError("Gitea answered with something that is not a pull request",
                             hint="check the repository's forge API URL") from None
