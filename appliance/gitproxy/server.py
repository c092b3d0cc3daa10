"""The git proxy: a WSGI app speaking git's smart HTTP protocol to guests.

    GET  /<key>.git/info/refs?service=git-upload-pack|git-receive-pack
    POST /<key>.git/git-upload-pack
    POST /<key>.git/git-receive-pack

The guest's remote is `http://<bridge-ip>:<git_proxy_port>/<key>.git`; its token is the HTTP
basic-auth password (the user name is ignored), which git reads from a credential file (see
`guest_remote`), so the remote URL the agent can print holds no secret. A token counts only
from the address of the live sandbox it was issued for. Every request is checked the same way and
says as little as possible: no/unknown/expired/revoked token, or one from another address -> 401; a token for another
repository, or a repository the appliance does not know -> 404 (the same 404 either way).

Fetches are served by `git upload-pack --stateless-rpc` on the host-side mirror (protocol v2 when
the client asks for it), after refreshing the mirror from upstream at most every
`refresh_interval` seconds. Pushes are parsed here: only creates/updates of
`refs/heads/<this session's work branch>` pass; the pack goes into a quarantine next to the mirror,
then upstream with the host credential, and only after upstream accepted it into the mirror.
Every refusal is reported in git's own report-status, so `git push` prints
`! [remote rejected] main -> main (the appliance only lets this session push refs/heads/...)`.
"""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

from werkzeug.wsgi import get_input_stream

from . import pktline, tokens
from .git import GitError
from .mirror import MirrorStore, PushOutcome
from .pktline import PktReader, ProtocolError
from .repos import RepoSpec
from .tokens import Grant

log = logging.getLogger(__name__)

ROUTE = re.compile(r"^/(?P<key>.+?)(?:\.git)?/(?P<action>info/refs|git-upload-pack|git-receive-pack)$")
SERVICES = ("git-upload-pack", "git-receive-pack")
CHUNK = 64 * 1024
MAX_FETCH_REQUEST = 256 * 1024 * 1024  # wants/haves of a huge repository, decompressed

TEXT_401 = b"authentication required: use the remote URL this session was given\n"
TEXT_404 = b"repository not found\n"


def remote_url(token: str, repo_key: str, host: str, port: int) -> str:
    """The URL with the token in it (host-side tools and tests; guests get `guest_remote`)."""
    return f"http://git:{token}@{host}:{port}/{repo_key}.git"


def guest_remote(token: str, repo_key: str, host: str, port: int) -> tuple[str, str]:
    """(the remote URL without any credential, the line for a `git credential-store` file that
    holds the token): what a guest clones with, so that `git remote -v` prints no secret."""
    return f"http://{host}:{port}/{repo_key}.git", f"http://git:{token}@{host}:{port}\n"


def with_db(fn, *args):
    """Call `fn` with a database connection open in this (request) thread, if there is a database."""
    from appliance.db import database

    if database.obj is not None and database.is_closed():
        with database.connection_context():
            return fn(*args)
    return fn(*args)


def _default_verify(token: str, remote_addr: str) -> Grant | None:
    return with_db(tokens.verify, token, remote_addr)


class BodyTooLarge(ProtocolError):
    pass


class LimitedReader:
    """read(n) from `stream`, failing once more than `limit` bytes came through."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit, self.count = stream, limit, 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n if n is not None and n >= 0 else CHUNK)
        self.count += len(data)
        if self.count > self.limit:
            raise BodyTooLarge(f"request larger than {self.limit} bytes")
        return data


class GunzipReader:
    """A streaming gzip decoder with a file-like read(n)."""

    def __init__(self, stream):
        self.stream = stream
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.buf = b""
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else n
        while len(self.buf) < n and not self.eof:
            raw = self.stream.read(CHUNK)
            if not raw:
                self.buf += self.z.flush()
                self.eof = True
                break
            try:
                self.buf += self.z.decompress(raw)
            except zlib.error as e:
                raise ProtocolError(f"bad gzip request body: {e}") from None
            if self.z.eof:
                self.eof = True
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def drain(stream) -> None:
    try:
        while stream.read(CHUNK):
            pass
    except (OSError, ProtocolError):
        pass


class ProcessResponse:
    """A WSGI body streaming a child's stdout while a thread feeds it the request body."""

    def __init__(self, proc: subprocess.Popen, body, prefix: bytes, what: str, stderr_file):
        self.proc, self.body, self.prefix, self.what, self.stderr_file = proc, body, prefix, what, stderr_file
        self.feeder = None
        if body is not None:
            self.feeder = threading.Thread(target=self._feed, daemon=True, name=f"feed-{what}")
            self.feeder.start()
        else:
            proc.stdin.close()

    def _feed(self) -> None:
        try:
            while True:
                chunk = self.body.read(CHUNK)
                if not chunk:
                    break
                self.proc.stdin.write(chunk)
        except (BrokenPipeError, OSError, ProtocolError) as e:
            log.debug("%s: stopped feeding the request: %s", self.what, e)
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def __iter__(self):
        if self.prefix:
            yield self.prefix
        while True:
            chunk = self.proc.stdout.read1(CHUNK) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(CHUNK)
            if not chunk:
                break
            yield chunk

    def close(self) -> None:
        # Closing our end first: a child still writing (the client went away) gets EPIPE and exits.
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.feeder is not None:
            self.feeder.join(timeout=5)
        if self.proc.returncode:
            self.stderr_file.seek(0)
            log.warning("%s exited %s: %s", self.what, self.proc.returncode,
                        self.stderr_file.read(2000).decode("utf-8", "replace").strip())
        self.stderr_file.close()


class GitProxy:
    """The WSGI application. `resolve_repo(key)` describes a repository (None: unknown); it and
    `verify_token` are called in request threads with a database connection open."""

    def __init__(
        self,
        mirrors: MirrorStore,
        resolve_repo: Callable[[str], RepoSpec | None],
        *,
        verify_token: Callable[[str, str], Grant | None] = _default_verify,
        allow_force_push: bool = False,
        max_push_bytes: int = 1024 * 1024 * 1024,
        realm: str = "appliance git",
        on_push: Callable[[Grant, str], None] | None = None,
    ):
        """`on_push(grant, sha)` hears of every push upstream accepted (the sha really received)."""
        self.mirrors = mirrors
        self.git = mirrors.git
        self.resolve_repo = resolve_repo
        self.verify_token = verify_token
        self.allow_force_push = allow_force_push
        self.max_push_bytes = max_push_bytes
        self.realm = realm
        self.on_push = on_push

    # -- WSGI ----------------------------------------------------------------------------------

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        try:
            return self._dispatch(environ, start_response)
        except Exception:  # never a traceback (or anything in it) to the client
            log.exception("git proxy: %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            return self._text(start_response, "500 Internal Server Error", b"internal error in the appliance's git proxy\n")

    def _dispatch(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        grant = self._authenticate(environ)
        if grant is None:
            return self._text(start_response, "401 Unauthorized", TEXT_401,
                              [("WWW-Authenticate", f'Basic realm="{self.realm}"')])
        m = ROUTE.match(environ.get("PATH_INFO", ""))
        key = m.group("key") if m else None
        spec = with_db(self.resolve_repo, key) if key == grant.repo_key else None
        if m is None or spec is None:
            log.info("git proxy: session %s asked for %r: not its repository", grant.session_id, key)
            return self._text(start_response, "404 Not Found", TEXT_404)
        action = m.group("action")
        if action == "info/refs" and method in ("GET", "HEAD"):
            service = parse_qs(environ.get("QUERY_STRING", "")).get("service", [""])[0]
            if service not in SERVICES:
                return self._text(start_response, "403 Forbidden",
                                  b"the appliance's git proxy speaks only git's smart HTTP protocol\n")
            return self._info_refs(environ, start_response, spec, grant, service)
        if method != "POST" or action == "info/refs":
            return self._text(start_response, "405 Method Not Allowed", b"method not allowed\n")
        if action == "git-upload-pack":
            return self._upload_pack(environ, start_response, spec, grant)
        return self._receive_pack(environ, start_response, spec, grant)

    def _authenticate(self, environ) -> Grant | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            _user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        # the token counts only from the guest it was issued to (tokens.verify checks the address)
        return self.verify_token(password, environ.get("REMOTE_ADDR", "")) if password else None

    @staticmethod
    def _text(start_response, status: str, body: bytes, headers=()):
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-cache"), *headers])
        return [body]

    @staticmethod
    def _git_headers(kind: str) -> list[tuple[str, str]]:
        return [("Content-Type", f"application/x-{kind}"), ("Cache-Control", "no-cache, max-age=0, must-revalidate"),
                ("Expires", "Fri, 01 Jan 1980 00:00:00 GMT"), ("Pragma", "no-cache")]

    @staticmethod
    def _protocol(environ) -> str | None:
        """GIT_PROTOCOL for the child: only `version=2` passes (anything else means v0)."""
        items = environ.get("HTTP_GIT_PROTOCOL", "").split(":")
        return "version=2" if "version=2" in items else None

    # -- info/refs -----------------------------------------------------------------------------

    def _info_refs(self, environ, start_response, spec: RepoSpec, grant: Grant, service: str):
        try:
            mirror = self.mirrors.ensure(spec)
        except GitError as e:
            log.warning("git proxy: %s for session %s: %s", service, grant.session_id, e.message)
            start_response("200 OK", self._git_headers(f"{service}-advertisement"))
            return [pktline.error_packet(e.message)]
        log.info("git proxy: session %s %s %s", grant.session_id,
                 "fetches" if service == "git-upload-pack" else "pushes to", spec.key)
        if service == "git-receive-pack":
            body = pktline.receive_advertisement(self.mirrors.refs(spec.key))
            start_response("200 OK", self._git_headers("git-receive-pack-advertisement")
                           + [("Content-Length", str(len(body)))])
            return [body]
        proto = self._protocol(environ)
        prefix = b"" if proto else pktline.pkt("# service=git-upload-pack\n") + pktline.FLUSH
        resp = self._spawn(["upload-pack", "--stateless-rpc", "--advertise-refs", str(mirror)], proto, None,
                           prefix, "upload-pack --advertise-refs")
        start_response("200 OK", self._git_headers("git-upload-pack-advertisement"))
        return resp

    def _mirror(self, spec: RepoSpec):
        """The mirror as it is (POSTs follow an info/refs that refreshed it), created if missing."""
        if self.mirrors.exists(spec.key):
            return self.mirrors.path(spec.key)
        return self.mirrors.ensure(spec)

    def _spawn(self, args, proto, body, prefix, what) -> ProcessResponse:
        env = {"GIT_PROTOCOL": proto} if proto else {}
        err = tempfile.TemporaryFile()
        proc = self.git.popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        return ProcessResponse(proc, body, prefix, what, err)

    # -- fetch ---------------------------------------------------------------------------------

    def _request_body(self, environ, limit: int):
        stream = get_input_stream(environ, safe_fallback=True)
        stream = LimitedReader(stream, limit * 2)
        if environ.get("HTTP_CONTENT_ENCODING", "").lower() in ("gzip", "x-gzip"):
            stream = GunzipReader(stream)
        return LimitedReader(stream, limit)

    def _upload_pack(self, environ, start_response, spec: RepoSpec, grant: Grant):
        try:
            mirror = self._mirror(spec)
        except GitError as e:
            start_response("200 OK", self._git_headers("git-upload-pack-result"))
            return [pktline.error_packet(e.message)]
        body = self._request_body(environ, MAX_FETCH_REQUEST)
        resp = self._spawn(["upload-pack", "--stateless-rpc", str(mirror)], self._protocol(environ), body,
                           b"", "upload-pack")
        start_response("200 OK", self._git_headers("git-upload-pack-result"))
        return resp

    # -- push ----------------------------------------------------------------------------------

    def _receive_pack(self, environ, start_response, spec: RepoSpec, grant: Grant):
        body = self._request_body(environ, self.max_push_bytes)
        try:
            req = pktline.parse_push_request(PktReader(body))
        except ProtocolError as e:
            drain(body)
            return self._text(start_response, "400 Bad Request", f"bad push request: {e}\n".encode())
        headers = self._git_headers("git-receive-pack-result")
        if not req.commands:  # git's probe before a large (chunked) push: "0000"
            drain(body)
            start_response("200 OK", headers + [("Content-Length", "0")])
            return [b""]

        results: dict[str, str | None] = {}
        messages: list[str] = []
        allowed = []
        for cmd in req.commands:
            why = pktline.refusal(cmd, grant.work_branch)
            results[cmd.ref] = why
            if why is None:
                allowed.append(cmd)
            else:
                log.info("git proxy: session %s may not push %s to %s", grant.session_id, cmd.ref, spec.key)
        if len(allowed) < len(req.commands):
            messages.append(f"appliance: this session may push only to {grant.work_ref} "
                            f"(e.g. git push origin HEAD:{grant.work_branch}); other refs are refused")
        unpack = "ok"
        if allowed:
            unpack = self._push_allowed(body, spec, grant, allowed, results, messages)
        else:
            drain(body)
        reply = pktline.report_status(unpack, [(c.ref, results[c.ref]) for c in req.commands], messages, req)
        start_response("200 OK", headers + [("Content-Length", str(len(reply)))])
        return [reply]

    def _push_allowed(self, body, spec, grant, allowed, results, messages) -> str:
        try:
            self._mirror(spec)
        except GitError as e:
            drain(body)
            for cmd in allowed:
                results[cmd.ref] = e.message
            return "ok"
        with self.mirrors.incoming(spec.key) as inc:
            error = self._index_pack(body, inc)
            if error:
                for cmd in allowed:
                    results[cmd.ref] = "unpacker error"
                return error
            for cmd in allowed:
                why = self.mirrors.check_pushed_commit(inc, cmd.new)
                if why:
                    results[cmd.ref] = why
                    continue
                try:
                    outcome = self.mirrors.push_upstream(spec, inc, grant.work_branch, cmd.old, cmd.new,
                                                         force=self.allow_force_push)
                except GitError as e:  # timed out, mirror busy
                    outcome = PushOutcome(False, e.message)
                results[cmd.ref] = None if outcome.ok else outcome.reason
                messages.extend(f"upstream: {line}" for line in outcome.detail)
                if outcome.ok:
                    log.info("git proxy: session %s pushed %s %s to %s", grant.session_id, cmd.ref,
                             cmd.new[:12], spec.key)
                    self._tell_pushed(grant, cmd.new)
                else:
                    messages.append(f"appliance: {outcome.reason}")
        return "ok"

    def _tell_pushed(self, grant: Grant, sha: str) -> None:
        if self.on_push is None:
            return
        try:
            with_db(self.on_push, grant, sha)
        except Exception:  # upstream has the push: the client must hear so, whatever failed here
            log.exception("git proxy: recording session %s's push of %s failed", grant.session_id, sha[:12])

    def _index_pack(self, body, inc) -> str | None:
        """Stream the pack into the quarantine; None when it is stored, else the unpack error."""
        err = tempfile.TemporaryFile()
        proc = self.git.popen(["index-pack", "--stdin", "--fix-thin", f"--max-input-size={self.max_push_bytes}"],
                              env=inc.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        failure = None
        try:
            while True:
                chunk = body.read(CHUNK)
                if not chunk:
                    break
                proc.stdin.write(chunk)
        except BrokenPipeError:
            drain(body)
        except ProtocolError as e:  # too large, bad gzip
            failure = str(e)
            drain(body)
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.wait()
        err.seek(0)
        stderr = err.read(4000).decode("utf-8", "replace").strip()
        err.close()
        if failure or proc.returncode:
            log.warning("index-pack failed (%s): %s", proc.returncode, stderr)
            return failure or (stderr.splitlines()[-1].removeprefix("fatal: ") if stderr else "index-pack failed")
        return None
