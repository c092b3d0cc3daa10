"""What the git proxy needs to know about a repository: where upstream is and how to log in.

A plain description, filled by whoever owns repositories (the session engine's Repository model);
the proxy asks for one by key through a `resolve(key) -> RepoSpec | None` callable.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from appliance.errors import ConfigError

from .git import Credential

# One or more '/'-separated segments, as in "acme/api": the proxy URL is then .../acme/api.git.
KEY_RE = re.compile(r"^(?=.{1,200}$)[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
CREDENTIAL_KINDS = ("none", "token", "ssh_key")


class BadRepoSpec(ConfigError):
    """A repository description the proxy cannot use."""


def url_kind(url: str) -> str:
    """'http', 'ssh' or 'local' for a git remote URL ('unknown' for anything else, such as the
    `<transport>::<address>` remote-helper syntax)."""
    if "::" in url or any(c in url for c in "\r\n\0"):
        return "unknown"
    if re.match(r"^https?://", url, re.I):
        return "http"
    if url.startswith("ssh://") or url.startswith("git+ssh://"):
        return "ssh"
    if url.startswith("file://") or url.startswith("/"):
        return "local"
    if re.match(r"^[^/:]+@[^/:]+:", url) or re.match(r"^[A-Za-z0-9.-]+:[^/]", url):
        return "ssh"  # scp-like user@host:path
    return "unknown"


@dataclasses.dataclass(frozen=True)
class RepoSpec:
    """One upstream repository.

    key            the name in the proxy URL: http://git:<token>@<bridge>:<port>/<key>.git
    url            https://host/org/repo.git | ssh://git@host/org/repo.git | git@host:org/repo.git
                   | /srv/git/repo.git | file:///srv/git/repo.git (no credentials inside the URL)
    credential_kind none | token (https) | ssh_key (ssh; credential = the private key text)
    default_branch the branch a clone checks out; empty: whatever upstream's HEAD names
    """

    key: str
    url: str
    credential_kind: str = "none"
    credential: str = dataclasses.field(default="", repr=False)
    username: str = "x-access-token"
    default_branch: str = ""
    known_hosts: str = dataclasses.field(default="", repr=False)

    def __post_init__(self) -> None:
        if not valid_key(self.key):
            raise BadRepoSpec(f"repository key {self.key!r} is not usable in a URL",
                              hint="use '/'-separated names of letters, digits, '.', '_' and '-' (none ending in .git)")
        if self.credential_kind not in CREDENTIAL_KINDS:
            raise BadRepoSpec(f"repository {self.key}: unknown credential kind {self.credential_kind!r}",
                              hint=f"use one of {', '.join(CREDENTIAL_KINDS)}")
        kind = url_kind(self.url)
        if kind == "unknown":
            raise BadRepoSpec(f"repository {self.key}: {self.url!r} is not a git URL the appliance can use",
                              hint="use https://..., ssh://..., user@host:path or an absolute local path")
        if kind == "http":
            parts = urllib.parse.urlsplit(self.url)
            if parts.password is not None or (parts.username and self.credential_kind == "token"):
                raise BadRepoSpec(f"repository {self.key}: the URL carries credentials",
                                  hint="put the token in the repository's credential, not in its URL")
        if self.credential_kind == "token":
            if kind != "http":
                raise BadRepoSpec(f"repository {self.key}: a token needs an https:// URL")
            if not self.credential or any(c in self.credential for c in "\r\n\0"):
                raise BadRepoSpec(f"repository {self.key}: the token is empty or has line breaks")
        if self.credential_kind == "ssh_key":
            if kind != "ssh":
                raise BadRepoSpec(f"repository {self.key}: a deploy key needs an ssh URL")
            if "PRIVATE KEY" not in self.credential:
                raise BadRepoSpec(f"repository {self.key}: the deploy key is not a private key in PEM/OpenSSH form")
        if self.default_branch and not valid_branch_name(self.default_branch):
            raise BadRepoSpec(f"repository {self.key}: {self.default_branch!r} is not a valid branch name")

    @property
    def cred(self) -> Credential:
        if self.credential_kind == "none":
            return Credential()
        return Credential(kind=self.credential_kind, secret=self.credential, username=self.username,
                          known_hosts=self.known_hosts)

    @property
    def fetch_url(self) -> str:
        """The URL handed to git (local paths as-is)."""
        return self.url


def valid_key(key: str) -> bool:
    return bool(KEY_RE.match(key)) and ".." not in key and not any(
        seg.endswith((".git", ".lock")) for seg in key.split("/"))


def fs_name(key: str) -> str:
    """A flat file name for a key ('/' is not allowed in keys' segments, '~' is not allowed at all)."""
    return key.replace("/", "~")


_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def valid_branch_name(name: str) -> bool:
    """git check-ref-format rules for `refs/heads/<name>`, plus: no leading '-'."""
    if not name or len(name) > 200 or name.startswith("-") or name == "@" or name == "HEAD":
        return False
    if _BAD_REF_CHARS.search(name) or ".." in name or "@{" in name or "//" in name:
        return False
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return False
    for comp in name.split("/"):
        if not comp or comp.startswith(".") or comp.endswith(".lock"):
            return False
    return True
