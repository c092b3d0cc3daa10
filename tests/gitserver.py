"""A real upstream git server for tests: `git http-backend` behind a threaded HTTP server on 127.0.0.1.

Use it as a pytest plugin: put `pytest_plugins = ["gitserver"]` at the top of a test module
(tests/ is on sys.path) and ask for the `git_server` fixture, or build a `GitServer` yourself.

- Smart HTTP through the real CGI (`GIT_PROJECT_ROOT`, `GIT_HTTP_EXPORT_ALL`, `REMOTE_USER` — which
  enables receive-pack —, `CONTENT_LENGTH`, `HTTP_CONTENT_ENCODING` for gzip'd bodies, chunked
  request bodies decoded, `HTTP_GIT_PROTOCOL` for protocol v2).
- Every request needs HTTP basic auth whose password is `server.token` (any user name), so a test
  can prove a credential is needed and was used; `server.requests` records what came in.
- Helpers: `create_repo(name, files)` (a bare repo with one commit on `main`), `commit(...)`
  (someone else pushes upstream), `head(name, branch)`, `read_file(name, branch, path)`.
- `stop()` closes the port: the upstream is then unreachable (connection refused).
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest


def clean_git_env(home: Path | str, **extra: str) -> dict[str, str]:
    """An environment for git *clients* in tests: nothing from the developer's own git setup."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.test",
        "GIT_COMMITTER_NAME": "Test Author",
        "GIT_COMMITTER_EMAIL": "author@example.test",
    }
    env.update(extra)
    return env


def run_git(args, cwd=None, env=None, check=True, input=None) -> subprocess.CompletedProcess:
    p = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, input=input, timeout=120)
    if check and p.returncode:
        raise AssertionError(f"git {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: str
    authorized: bool
    user: str | None
    content_encoding: str = ""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, fmt, *args):  # quiet
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _auth(self) -> tuple[bool, str | None]:
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return False, None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except Exception:
            return False, None
        return secrets.compare_digest(password, self.server.owner.token), user

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        owner = self.server.owner
        parts = urlsplit(self.path)
        body = self._body()
        ok, user = self._auth()
        owner.requests.append(Request(self.command, unquote(parts.path), parts.query, ok, user,
                                      self.headers.get("Content-Encoding", "")))
        if not ok:
            self._reply(401, b"upstream: credentials required\n",
                        [("WWW-Authenticate", 'Basic realm="test upstream"'), ("Content-Type", "text/plain")])
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(owner.home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "tests-gitserver",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(parts.path),
            "QUERY_STRING": parts.query,
            "REMOTE_USER": user or "git",
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if self.headers.get(header):
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        p = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120)
        head, sep, payload = p.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = p.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        if p.returncode and not p.stdout:
            status, payload, headers = 500, p.stderr, [("Content-Type", "text/plain")]
        self._reply(status, payload, headers)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: GitServer


class GitServer:
    """Serves every bare repository under `root` at http://127.0.0.1:<port>/<name>.git."""

    def __init__(self, root: Path, token: str | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="gitserver-home-"))
        self.token = token or "ghp_test_" + secrets.token_hex(16)
        self.requests: list[Request] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.env = clean_git_env(self.home)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> GitServer:
        self._httpd = _Server(("127.0.0.1", self.port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="gitserver")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket (the port then refuses connections)."""
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def receive_pack_posts(self, name: str) -> int:
        """How many pushes (authorized POSTs to git-receive-pack) reached repository `name`."""
        return sum(1 for r in self.requests if r.method == "POST" and r.authorized
                   and r.path == f"/{name}.git/git-receive-pack")

    # -- repositories --------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.root / f"{name}.git"

    def create_repo(self, name: str, files: dict[str, str | bytes] | None = None, branch: str = "main",
                    message: str = "initial commit") -> str:
        """A bare repository `name` whose `branch` has one commit with `files`; returns its id.
        `files=None` leaves the repository empty."""
        bare = self.path(name)
        bare.parent.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--bare", "-q", "-b", branch, str(bare)], env=self.env)
        if files is None:
            return ""
        return self.commit(name, branch, files, message)

    def commit(self, name: str, branch: str, files: dict[str, str | bytes], message: str = "upstream change",
               base: str | None = None) -> str:
        """Commit `files` on top of `branch` (or, if it does not exist, of `base`, or as a root
        commit) directly in the upstream repository; returns the new commit id."""
        bare = self.path(name)
        with tempfile.TemporaryDirectory(prefix="gitserver-work-") as work:
            run_git(["init", "-q", work], env=self.env)
            start = branch if self.head(name, branch) else base
            if start:
                run_git(["fetch", "-q", str(bare), f"refs/heads/{start}"], cwd=work, env=self.env)
                run_git(["checkout", "-q", "-B", branch, "FETCH_HEAD"], cwd=work, env=self.env)
            else:
                run_git(["checkout", "-q", "--orphan", branch], cwd=work, env=self.env)
            for rel, content in files.items():
                f = Path(work) / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(content if isinstance(content, bytes) else content.encode())
            run_git(["add", "-A"], cwd=work, env=self.env)
            run_git(["commit", "-q", "--allow-empty", "-m", message], cwd=work, env=self.env)
            run_git(["push", "-q", str(bare), f"HEAD:refs/heads/{branch}"], cwd=work, env=self.env)
            return run_git(["rev-parse", "HEAD"], cwd=work, env=self.env).stdout.strip()

    def head(self, name: str, branch: str) -> str | None:
        p = run_git(["--git-dir", str(self.path(name)), "rev-parse", "--verify", "--quiet",
                     f"refs/heads/{branch}"], env=self.env, check=False)
        return p.stdout.strip() or None

    def branches(self, name: str) -> dict[str, str]:
        p = run_git(["--git-dir", str(self.path(name)), "for-each-ref", "--format=%(refname:short) %(objectname)",
                     "refs/heads/"], env=self.env)
        return dict(line.split(" ", 1) for line in p.stdout.splitlines())

    def refs(self, name: str) -> dict[str, str]:
        p = run_git(["--git-dir", str(self.path(name)), "for-each-ref", "--format=%(refname) %(objectname)"],
                    env=self.env)
        return dict(line.split(" ", 1) for line in p.stdout.splitlines())

    def read_file(self, name: str, branch: str, path: str) -> str:
        return run_git(["--git-dir", str(self.path(name)), "show", f"refs/heads/{branch}:{path}"],
                       env=self.env).stdout

    def set_hook(self, name: str, hook: str, script: str) -> None:
        """Install a server-side hook (e.g. a pre-receive that refuses) in repository `name`."""
        f = self.path(name) / "hooks" / hook
        f.write_text(script)
        f.chmod(0o755)


@pytest.fixture
def git_server(tmp_path):
    """A running upstream git server with its own token; stopped and removed after the test."""
    server = GitServer(tmp_path / "upstream").start()
    try:
        yield server
    finally:
        server.close()
