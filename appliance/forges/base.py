"""What every forge offers the session engine, and the one HTTP client the remote forges share.

A forge turns a pushed branch into a reviewable pull (or merge) request. `Forge` is the interface;
`github`, `gitlab` and `gitea` speak their REST APIs through `ApiClient` (urllib, JSON, timeouts,
no redirects, errors mapped to `ForgeError`s); `local` keeps merge requests in the appliance's own
database for repositories hosted as bare repositories on this server.

The repository's credential (a token) goes only into a request header. It never appears in a URL, an
exception, a log line or a `repr`: every text that leaves this module passes through `redact`.
"""

from __future__ import annotations

import abc
import dataclasses
import http.client
import json
import logging
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import ApplianceError, ConfigError, NotFound

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 20.0
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
USER_AGENT = "appliance-forge/1"


# -- errors ------------------------------------------------------------------------------------


class ForgeError(ApplianceError):
    """The forge refused or failed a request."""


class ForgeConfigError(ForgeError, ConfigError):
    """The repository's forge settings cannot work (unknown kind, no API URL, no token)."""


class ForgeAuthError(ForgeError):
    """The forge rejected the credential (401) or it lacks a permission (403)."""


class ForgeUnreachable(ForgeError):
    """The forge's API could not be reached: refused, timed out, DNS, TLS."""


class ForgeNotFound(ForgeError, NotFound):
    """The forge says the project, a branch or a pull request does not exist (or is hidden)."""


class BranchNotFound(ForgeNotFound):
    """A branch named in the request is not on the forge (not pushed yet, or deleted)."""


class NothingToMerge(ForgeError):
    """The head branch has no commits that the base branch lacks."""


class MergeConflict(ForgeError):
    """The source and target branches change the same lines; nothing was merged."""

    def __init__(self, message: str, hint: str = "", conflicts: list[str] | None = None):
        super().__init__(message, hint)
        self.conflicts = conflicts or []


# -- the interface -----------------------------------------------------------------------------


OPEN, MERGED, CLOSED = "open", "merged", "closed"


@dataclasses.dataclass(frozen=True)
class PullRequest:
    """A pull/merge request as the appliance shows it, whatever the forge calls things.

    url      where a person reviews it (absolute for remote forges; `/repos/<name>/merge_requests/<id>`
             for the local forge, served by the console)
    number   the number people see (GitHub/Gitea `number`, GitLab `iid`, local id)
    state    open | merged | closed
    created  False when the forge already had an open request for the branch and that one was returned
    """

    url: str
    number: int
    state: str
    created: bool = True


@dataclasses.dataclass(frozen=True)
class Check:
    """One CI check of a pull request's head: state is passing | failing | pending."""

    name: str
    state: str
    excerpt: str = ""


@dataclasses.dataclass(frozen=True)
class ReviewNote:
    """A comment on a pull request: `thread` is what a reply goes to ("" the conversation);
    `path`/`line` where in the diff (empty for a conversation comment)."""

    id: str
    thread: str
    login: str
    body: str
    path: str = ""
    line: int | None = None


class Forge(abc.ABC):
    """One repository's forge."""

    kind: str = ""

    @abc.abstractmethod
    def create_pull_request(self, head: str, base: str, title: str, body: str = "", *,
                            author=None) -> PullRequest:
        """Propose branch `head` for merging into `base`. If an open request for `head` already
        exists, return it (with `created=False`) instead of failing. `author` (a User) is recorded
        by forges that keep their own records (local); remote forges attribute the request to the
        token's owner."""

    @abc.abstractmethod
    def get_pull_request(self, number: int) -> PullRequest:
        """The request's current state (raises ForgeNotFound)."""

    # The loop around a pull request (appliance.prloop). Forges without these say so.
    def pull_request_checks(self, number: int) -> list[Check]:
        """The CI checks of the request's head commit, as the forge reports them now."""
        return []

    def review_notes(self, number: int) -> list[ReviewNote]:
        """The request's review comments (and conversation comments), oldest first."""
        return []

    def reply_to_review(self, number: int, thread: str, body: str) -> None:
        """Answer on a review thread (`thread`: the forge's id of it; "" the request's conversation)."""
        raise ForgeError(f"{self.kind} forge: replying to reviews is not supported")

    def comment_on_issue(self, number: int, body: str) -> None:
        raise ForgeError(f"{self.kind} forge: commenting on issues is not supported")


# -- redaction ---------------------------------------------------------------------------------


def redact(text: str, secret: str | None) -> str:
    """`text` with `secret` (and its URL-encoded form) replaced by `***`."""
    if not text or not secret:
        return text
    for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
        if form:
            text = text.replace(form, "***")
    return text


# -- the HTTP client ---------------------------------------------------------------------------


@dataclasses.dataclass
class Response:
    status: int
    data: Any  # the decoded JSON (None for an empty or non-JSON body)
    text: str  # the body as text (redacted, for messages)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would replay the Authorization header to wherever a redirect points: never follow."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class ApiClient:
    """A thin JSON-over-HTTP client for one forge API.

    `request()` returns the response for 2xx and for the statuses in `accept`; any other status
    raises a ForgeError subclass (401/403 -> ForgeAuthError, 404 -> ForgeNotFound, other -> ForgeError)
    whose message names the forge, the method and path (never the host's credential). Network
    failures raise ForgeUnreachable.
    """

    def __init__(self, forge: str, api_url: str, headers: dict[str, str], *, secret: str = "",
                 timeout: float = DEFAULT_TIMEOUT):
        parts = urllib.parse.urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ForgeConfigError(f"{forge}: API URL {api_url!r} is not an http(s) URL",
                                   hint="set the repository's forge API URL, e.g. https://host/api/v1")
        if parts.username or parts.password:
            raise ForgeConfigError(f"{forge}: the API URL carries credentials",
                                   hint="put the token in the repository's credential, not in its URL")
        self.forge = forge
        self.api_url = api_url.rstrip("/")
        self._headers = dict(headers)
        self._secret = secret
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        return f"ApiClient({self.forge!r}, {self.api_url!r})"

    def redact(self, text: str) -> str:
        return redact(text, self._secret)

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: Any = None, accept: tuple[int, ...] = ()) -> Response:
        url = self.api_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **self._headers}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        where = f"{method} {self.redact(urllib.parse.urlsplit(url).path)}"
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as e:
            status = e.code
            try:
                raw = e.read(MAX_RESPONSE_BYTES)
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                e.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            why = _network_reason(e)
            log.info("%s API %s: unreachable (%s)", self.forge, where, why)
            raise ForgeUnreachable(f"{self.forge} API at {self.api_url} unreachable: {why}",
                                   hint="check the forge API URL and that this server can reach it; "
                                        "try again later") from None
        text = self.redact(raw.decode("utf-8", "replace"))
        try:
            payload = json.loads(text) if text.strip() else None
        except ValueError:
            payload = None
        log.debug("%s API %s -> %d", self.forge, where, status)
        response = Response(status, payload, text)
        if 200 <= status < 300 or status in accept:
            return response
        raise self.error_for(response, where)

    def error_for(self, response: Response, where: str) -> ForgeError:
        status = response.status
        detail = error_message(response)
        said = f": {detail}" if detail else ""
        if status == 401:
            return ForgeAuthError(f"{self.forge} rejected the repository's token ({where} -> 401{said})",
                                  hint="the token is wrong, expired or revoked: save a new one in the "
                                       "repository's settings")
        if status == 403:
            return ForgeAuthError(f"{self.forge} refused {where} (403{said})",
                                  hint="give the repository's token permission to create pull requests "
                                       "(or wait if this is a rate limit)")
        if status == 404:
            return ForgeNotFound(f"{self.forge}: {where} -> 404{said}",
                                 hint="check the repository's forge project name, and that the token can see it")
        if 300 <= status < 400:
            return ForgeError(f"{self.forge}: {where} was redirected ({status})",
                              hint="set the repository's forge API URL to the API's real address")
        return ForgeError(f"{self.forge}: {where} failed ({status}{said})",
                          hint="see the forge's message; try again later if it is a server error")


def error_message(response: Response) -> str:
    """The forge's own explanation, flattened: `message` as a string, a list or a field->list map
    (GitLab uses all three), plus GitHub's `errors[].message`/field codes."""
    data = response.data
    if not isinstance(data, dict):
        return response.text.strip()[:200]
    parts: list[str] = []
    parts.append(_flatten(data.get("message")))
    for err in data.get("errors") or []:
        if isinstance(err, dict):
            if err.get("message"):
                parts.append(str(err["message"]))
            elif err.get("field"):
                parts.append(f"{err['field']} {err.get('code', 'invalid')}")
        elif isinstance(err, str):
            parts.append(err)
    if data.get("error") and not any(parts):
        parts.append(_flatten(data.get("error")))
    return "; ".join(p for p in parts if p)[:500]


def _flatten(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(_flatten(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k} {_flatten(v)}" for k, v in value.items())
    return str(value)


def _network_reason(e: BaseException) -> str:
    reason = getattr(e, "reason", e)
    if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason).lower():
        return "the request timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(reason, socket.gaierror):
        return "its host name does not resolve"
    if isinstance(reason, ConnectionResetError) or isinstance(e, http.client.RemoteDisconnected):
        return "the connection was closed before an answer"
    if "ssl" in type(reason).__name__.lower() or "certificate" in str(reason).lower():
        return "the TLS handshake failed"
    return str(reason) or type(reason).__name__


# -- what the remote forges share ----------------------------------------------------------------


def repository_token(repository, forge: str) -> str:
    """The repository's API token, or a clear ForgeConfigError."""
    if repository.credential_kind != "token" or not repository.credential_secret:
        raise ForgeConfigError(f"repository {repository.name} has no token for the {forge} API",
                               hint=f"save a {forge} access token (with permission to create pull requests) "
                                    "as the repository's credential")
    token = repository.credential_secret.strip()
    if any(c in token for c in "\r\n\0 "):
        raise ForgeConfigError(f"repository {repository.name}: the token has spaces or line breaks",
                               hint="paste the token again, without surrounding text")
    return token


def project_path(repository, forge: str, *, min_segments: int = 2, max_segments: int | None = 2) -> str:
    """`owner/name` on the forge: the repository's `forge_project`, else taken from its git URL."""
    raw = (repository.forge_project or "").strip().strip("/")
    if not raw:
        raw = _path_from_git_url(repository.url)
    raw = raw.removesuffix(".git")
    segments = [s for s in raw.split("/") if s]
    if len(segments) < min_segments or (max_segments and len(segments) > max_segments) or any(
            s in (".", "..") for s in segments):
        want = "owner/name" if max_segments == 2 else "group/project"
        raise ForgeConfigError(f"repository {repository.name}: cannot tell its {forge} project ({raw!r})",
                               hint=f"set the repository's forge project to {want}")
    return "/".join(segments)


def _path_from_git_url(url: str) -> str:
    url = (url or "").strip()
    if "://" in url:
        return urllib.parse.urlsplit(url).path
    if ":" in url and not url.startswith("/"):  # scp-like git@host:owner/name.git
        return url.split(":", 1)[1]
    return ""


def git_url_host(url: str) -> str:
    url = (url or "").strip()
    if "://" in url:
        return urllib.parse.urlsplit(url).hostname or ""
    if ":" in url and not url.startswith("/"):
        return url.split(":", 1)[0].rsplit("@", 1)[-1]
    return ""


def segment(value: str) -> str:
    """One URL path segment."""
    return urllib.parse.quote(value, safe="")


def check_request(head: str, base: str, title: str) -> None:
    """Refuse a pull request no forge would accept, before asking one."""
    from ..gitproxy.repos import valid_branch_name

    for what, name in (("head", head), ("base", base)):
        if not valid_branch_name(name or ""):
            raise ForgeError(f"{name!r} is not a valid {what} branch name", hint="name an existing branch")
    if head == base:
        raise NothingToMerge(f"head and base are the same branch ({head})",
                             hint="propose the session's work branch, not its base")
    if not (title or "").strip():
        raise ForgeError("a pull request needs a title", hint="give the pull request a title")
