"""The one wrapper around the `git` binary on the host.

Every git process the appliance starts gets an environment built here from nothing: no inherited
`GIT_*` variables, no system or global config (so no credential helper, askpass, url rewrite or
hook of the host's users can run), no terminal prompts, and only the transports the appliance uses
(`GIT_ALLOW_PROTOCOL=file:http:https:ssh`).

How the host credential reaches upstream
----------------------------------------
- https + token: through `GIT_ASKPASS`, a fixed shell script (no secret in it) written under the
  git state dir. The token itself travels only in the *environment* of the host git process
  (`APPLIANCE_GIT_PASSWORD`), which only root/the daemon's user can read (`/proc/<pid>/environ` is
  mode 0400); it is never in argv (`ps`), never in a URL, never in a config file. Git asks for it
  only after the upstream answers 401, and the script answers only when git's prompt names the
  expected `scheme://host[:port]` — after a redirect to another host, or a downgrade to plain
  http, it answers nothing and git fails. (`http.extraHeader` would send the token on every
  request, before any challenge and to whatever a redirect points at.)
- ssh deploy key: the key is written to a 0600 file in a private temp directory for the duration
  of the call and named in `GIT_SSH_COMMAND` (`ssh -i <file> -o IdentitiesOnly=yes -o
  BatchMode=yes -F /dev/null`); host keys are checked against the repository's known_hosts if
  given, else trusted on first use and pinned in a per-repository file.
- local path / file:// URL: nothing to pass.

Everything git prints is passed through `Credential.redact` before it is logged or shown.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

ZERO_OID = "0" * 40

ASKPASS_SCRIPT = """#!/bin/sh
# Written by the appliance's git proxy. Holds no secret: answers git's credential prompts from
# the environment of the host-side git process, and only for the expected scheme://host[:port].
case "$1" in
  *"'$APPLIANCE_GIT_ORIGIN'"*|*"'$APPLIANCE_GIT_SCHEME://"*"@$APPLIANCE_GIT_HOSTPORT'"*) ;;
  *) echo "appliance askpass: refusing to answer for another host" >&2; exit 1 ;;
esac
case "$1" in
  Username*) printf '%s\\n' "$APPLIANCE_GIT_USERNAME" ;;
  Password*) printf '%s\\n' "$APPLIANCE_GIT_PASSWORD" ;;
  *) exit 1 ;;
esac
"""

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


class GitError(ApplianceError):
    """A host-side git command failed."""


class UpstreamError(GitError):
    """The upstream repository could not be reached, refused the credential, or refused an update."""


@dataclasses.dataclass(frozen=True)
class Credential:
    """How to authenticate to one upstream. `secret` never leaves the host."""

    kind: str = "none"  # none | token | ssh_key
    secret: str = dataclasses.field(default="", repr=False)
    username: str = "x-access-token"  # for tokens over https (GitHub accepts any; GitLab wants oauth2)
    known_hosts: str = dataclasses.field(default="", repr=False)  # for ssh; empty: trust on first use

    def redact(self, text: str) -> str:
        """`text` with the secret (and obvious encodings of it) replaced by `***`."""
        if self.kind == "none" or not self.secret:
            return text
        import base64

        out = text
        for form in {self.secret, urllib.parse.quote(self.secret, safe=""),
                     base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()}:
            if form:
                out = out.replace(form, "***")
        if self.kind == "ssh_key":
            for line in self.secret.splitlines():
                if len(line.strip()) >= 16:
                    out = out.replace(line.strip(), "***")
        return out


NO_CREDENTIAL = Credential()


@dataclasses.dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Git:
    """Runs `git` with a controlled environment. `state_dir` holds the askpass script, an empty
    HOME and the pinned ssh host keys."""

    def __init__(self, state_dir: Path, git_bin: str = "git", timeout: float = 600.0):
        self.state_dir = Path(state_dir)
        self.git_bin = shutil.which(git_bin) or git_bin
        self.timeout = timeout
        self.home = self.state_dir / "home"
        self.askpass = self.state_dir / "bin" / "askpass"
        self.known_hosts_dir = self.state_dir / "known_hosts"
        self._prepared = False

    def _prepare(self) -> None:
        if self._prepared:
            return
        for d in (self.home, self.askpass.parent, self.known_hosts_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.askpass.exists() or self.askpass.read_text() != ASKPASS_SCRIPT:
            tmp = self.askpass.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(ASKPASS_SCRIPT)
            tmp.chmod(0o700)
            os.replace(tmp, self.askpass)
        self._prepared = True

    # -- environment ---------------------------------------------------------------------------

    def base_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every git process: nothing inherited but PATH and locale."""
        self._prepare()
        env = {
            "PATH": os.environ.get("PATH") or SAFE_PATH,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": "file:http:https:ssh",
            "GIT_ASKPASS": "/bin/false",  # overridden below when a token is to be given
            "SSH_ASKPASS": "/bin/false",
            "GIT_SSH_COMMAND": "ssh -F /dev/null -o BatchMode=yes",
            "GIT_CONFIG_COUNT": "3",
            "GIT_CONFIG_KEY_0": "credential.helper",  # reset any helper list (there is none, but be sure)
            "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "core.hooksPath",  # never run hooks on the host
            "GIT_CONFIG_VALUE_1": "/dev/null",
            "GIT_CONFIG_KEY_2": "protocol.version",
            "GIT_CONFIG_VALUE_2": "2",
        }
        if extra:
            env.update(extra)
        return env

    @contextmanager
    def credential_env(self, url: str, credential: Credential) -> Iterator[dict[str, str]]:
        """Variables that let a git process talking to `url` authenticate with `credential`."""
        if credential.kind == "none":
            yield {}
            return
        self._prepare()
        if credential.kind == "token":
            parts = urllib.parse.urlsplit(url)
            hostport = parts.hostname or ""
            if parts.port:
                hostport += f":{parts.port}"
            yield {
                "GIT_ASKPASS": str(self.askpass),
                "APPLIANCE_GIT_SCHEME": parts.scheme,
                "APPLIANCE_GIT_HOSTPORT": hostport,
                "APPLIANCE_GIT_ORIGIN": f"{parts.scheme}://{hostport}",
                "APPLIANCE_GIT_USERNAME": credential.username,
                "APPLIANCE_GIT_PASSWORD": credential.secret,
            }
            return
        if credential.kind == "ssh_key":
            tmp = Path(tempfile.mkdtemp(prefix="sshkey-", dir=self.state_dir))
            try:
                key = tmp / "id"
                fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(credential.secret.strip() + "\n")
                if credential.known_hosts:
                    known = tmp / "known_hosts"
                    known.write_text(credential.known_hosts.strip() + "\n")
                    strict = "yes"
                else:
                    known = self.known_hosts_dir / (ssh_host_of(url) or "unknown")
                    strict = "accept-new"
                cmd = ("ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none"
                       f" -o StrictHostKeyChecking={strict} -o UserKnownHostsFile={shlex.quote(str(known))}"
                       f" -i {shlex.quote(str(key))}")
                yield {"GIT_SSH_COMMAND": cmd}
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return
        raise GitError(f"unknown credential kind {credential.kind!r}", hint="use none, token or ssh_key")

    # -- running -------------------------------------------------------------------------------

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        credential: Credential = NO_CREDENTIAL,
        url: str = "",
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Result:
        """Run `git <args>`; output is decoded and redacted. `url` is the upstream the credential is for."""
        argv = [self.git_bin, *args]
        with self.credential_env(url, credential) as cred_env:
            full_env = self.base_env({**(env or {}), **cred_env})
            try:
                p = subprocess.run(argv, cwd=cwd, env=full_env, input=input, capture_output=True,
                                   timeout=timeout or self.timeout)
            except subprocess.TimeoutExpired as e:
                raise UpstreamError(f"git {args[0]} timed out after {e.timeout:.0f}s",
                                    hint="the upstream is slow or unreachable; try again later") from None
        res = Result(argv, p.returncode,
                     credential.redact(p.stdout.decode("utf-8", "replace")),
                     credential.redact(p.stderr.decode("utf-8", "replace")))
        if check and not res.ok:
            raise GitError(f"git {args[0]} failed: {last_line(res.stderr) or f'exit {res.returncode}'}")
        return res

    def popen(self, args: Sequence[str], *, cwd: Path | str | None = None,
              env: Mapping[str, str] | None = None, **kw) -> subprocess.Popen:
        """Start `git <args>` (no credential: for local work such as upload-pack on a mirror)."""
        return subprocess.Popen([self.git_bin, *args], cwd=cwd, env=self.base_env(env), **kw)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (fatal or lines or [""])[-1]


def ssh_host_of(url: str) -> str:
    """The host of an ssh URL (`ssh://user@host:port/path` or scp-like `user@host:path`)."""
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        return (parts.hostname or "") + (f"_{parts.port}" if parts.port else "")
    hostpart = url.split(":", 1)[0]
    return hostpart.rsplit("@", 1)[-1]


_UNREACHABLE = (
    ("could not resolve host", "its host name does not resolve"),
    ("name or service not known", "its host name does not resolve"),
    ("connection refused", "the connection was refused"),
    ("couldn't connect", "the connection failed"),
    ("failed to connect", "the connection failed"),
    ("no route to host", "there is no route to its host"),
    ("network is unreachable", "the network is unreachable"),
    ("timed out", "the connection timed out"),
    ("ssl", "the TLS handshake failed"),
    ("host key verification failed", "its ssh host key did not match"),
    ("could not read from remote repository", "the ssh connection failed"),
    ("does not appear to be a git repository", "it is not a git repository"),
)
_CREDENTIAL = ("authentication failed", "returned error: 401", "returned error: 403", "could not read username",
               "could not read password", "permission denied", "terminal prompts disabled")


def describe_upstream_failure(stderr: str, url: str, name: str) -> str:
    """A short sentence, safe to show a guest, for why talking to the upstream of `name` failed.

    It names the repository by its key and never includes the upstream's URL, host, port or
    credential (the full git output goes to the host's log instead)."""
    low = stderr.lower()
    for needle, why in _UNREACHABLE:
        if needle in low:
            return f"upstream of {name} unreachable: {why}"
    if any(s in low for s in _CREDENTIAL):
        return f"upstream of {name} refused the appliance's credential"
    if "not found" in low or "returned error: 404" in low:
        return f"upstream of {name} says the repository does not exist"
    detail = last_line(stderr)
    for prefix in ("fatal: ", "error: "):
        detail = detail.removeprefix(prefix)
    if url:
        detail = detail.replace(url.rstrip("/") + "/", f"<{name}>").replace(url, f"<{name}>")
        host = urllib.parse.urlsplit(url).hostname if "://" in url else ssh_host_of(url)
        if host:
            detail = detail.replace(host, "<upstream>")
    return f"upstream of {name} failed" + (f": {detail}" if detail else "")
