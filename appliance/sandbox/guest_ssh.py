"""The one wrapper around SSH into guests (paramiko).

The host key is pinned: the appliance generated it and handed it to the guest, so any other key is
an attack, not a first contact. File transfer goes over `cat` on an exec channel rather than SFTP
so that the guest needs nothing beyond sshd.
"""

from __future__ import annotations

import base64
import io
import os
import select
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paramiko

from ..errors import SandboxError

Sink = Callable[[bytes], None]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes  # the last `max_output` bytes of it (see stdout_cut)
    stderr: bytes
    stdout_cut: int = 0  # bytes dropped from the front of stdout (over max_output)
    stderr_cut: int = 0

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class StdinFeed:
    """What a running command reads on stdin, written while it runs (the agent's steering).
    Thread-safe: `write` and `close` come from other threads; `exec` sends it as it arrives."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._closed = False
        self._wakeup_r, self._wakeup_w = os.pipe()  # select() on it wakes the sending loop
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)

    def _wake(self) -> None:
        try:
            os.write(self._wakeup_w, b"x")
        except (BlockingIOError, OSError):  # full (it is awake anyway) or released
            pass

    def write(self, data: bytes) -> bool:
        """Queue `data`; False once closed (the command reads no more)."""
        with self._lock:
            if self._closed:
                return False
            self._pending.append(data)
        self._wake()
        return True

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()

    def take(self) -> tuple[list[bytes], bool]:
        """(what is waiting to be sent, whether stdin ends after it)."""
        with self._lock:
            pending, self._pending = self._pending, []
            try:
                os.read(self._wakeup_r, 4096)
            except (BlockingIOError, OSError):
                pass
            return pending, self._closed

    def fileno(self) -> int:
        return self._wakeup_r

    def release(self) -> None:
        for fd in (self._wakeup_r, self._wakeup_w):
            try:
                os.close(fd)
            except OSError:
                pass


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, expected: paramiko.PKey):
        self.expected = expected

    def missing_host_key(self, client, hostname, key):
        if key.get_base64() != self.expected.get_base64():
            raise paramiko.SSHException(f"host key of {hostname} does not match the one the appliance gave it")


def load_public_key(openssh_line: str) -> paramiko.PKey:
    kind, b64 = openssh_line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(b64))


class _Tail:
    """The last `limit` bytes of a stream, and how many came before them."""

    def __init__(self, limit: int | None):
        self.limit, self.data, self.cut = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if self.limit is not None and len(self.data) > self.limit:
            extra = len(self.data) - self.limit
            del self.data[:extra]
            self.cut += extra


# What one command's output may keep in the daemon's memory, per stream, unless the caller says.
DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024


class GuestSSH:
    def __init__(self, host: str, user: str, client_key: str, host_public_key: str, port: int = 22,
                 max_output: int = DEFAULT_MAX_OUTPUT):
        self.host, self.user, self.port = host, user, port
        self.max_output = max_output  # bytes of each stream an exec keeps (its tail); the sinks see all
        self._client_key = paramiko.Ed25519Key.from_private_key(io.StringIO(client_key))
        self._host_key = load_public_key(host_public_key)
        self._client: paramiko.SSHClient | None = None

    def connect(self, timeout: float = 10.0) -> None:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_PinnedHostKey(self._host_key))
        client.connect(
            self.host, port=self.port, username=self.user, pkey=self._client_key,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
            allow_agent=False, look_for_keys=False,
        )
        client.get_transport().set_keepalive(15)
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "GuestSSH":
        if self._client is None:
            self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def transport(self) -> paramiko.Transport:
        if self._client is None:
            self.connect()
        return self._client.get_transport()

    def exec(self, command: str, stdin: bytes | None = None, on_stdout: Sink | None = None,
             on_stderr: Sink | None = None, timeout: float | None = None, env: dict[str, str] | None = None,
             max_output: int | None = None, feed: StdinFeed | None = None) -> ExecResult:
        """Run a command; stream its output to the sinks as it comes; return exit code and output.

        stdin: all of it, sent at once; or `feed`: sent as it is written, stdin closed when the feed is.
        The result keeps the last `max_output` bytes of each stream (default: the connection's),
        and says how many it dropped: a guest printing without end costs the host bounded memory."""
        limit = self.max_output if max_output is None else max_output
        chan = self.transport.open_session()
        try:
            if env:
                command = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + command
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
            if feed is None:
                chan.shutdown_write()
            writing = feed is not None
            out, err = _Tail(limit), _Tail(limit)
            deadline = None if timeout is None else time.monotonic() + timeout
            # Read until EOF, not until the exit status: sshd may send the status while output it
            # could not fit in our window is still queued behind it.
            while True:
                progressed = False
                if writing:
                    pending, ends = feed.take()
                    for data in pending:
                        chan.sendall(data)
                    if ends:
                        chan.shutdown_write()
                        writing = False
                while chan.recv_ready():
                    data = chan.recv(65536)
                    out.add(data)
                    progressed = True
                    if on_stdout:
                        on_stdout(data)
                while chan.recv_stderr_ready():
                    data = chan.recv_stderr(65536)
                    err.add(data)
                    progressed = True
                    if on_stderr:
                        on_stderr(data)
                drained = not chan.recv_ready() and not chan.recv_stderr_ready()
                if drained and (chan.eof_received or chan.closed) and chan.exit_status_ready():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise SandboxError(f"command timed out after {timeout} s: {command}")
                if not progressed:
                    select.select([chan, feed] if writing else [chan], [], [], 0.5)
            return ExecResult(chan.recv_exit_status(), bytes(out.data), bytes(err.data), out.cut, err.cut)
        finally:
            chan.close()

    def upload(self, data: bytes, path: str, mode: int = 0o644) -> None:
        result = self.exec(f"cat > {shlex.quote(path)} && chmod {mode:o} {shlex.quote(path)}", stdin=data)
        if result.exit_code != 0:
            raise SandboxError(f"upload to {path} failed: {result.stderr.decode(errors='replace').strip()}")

    def download(self, path: str, max_bytes: int | None = None) -> bytes:
        """The whole file; SandboxError if it is larger than `max_bytes` (default: max_output)."""
        data, cut = self.download_tail(path, self.max_output if max_bytes is None else max_bytes)
        if cut:
            raise SandboxError(f"download of {path} refused: {len(data) + cut} bytes, over the limit of {len(data)}")
        return data

    def download_tail(self, path: str, max_bytes: int) -> tuple[bytes, int]:
        """The last `max_bytes` bytes of a file, and how many bytes before them were not kept."""
        result = self.exec(f"cat {shlex.quote(path)}", max_output=max_bytes)
        if result.exit_code != 0:
            raise SandboxError(f"download of {path} failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout, result.stdout_cut

    def interactive(self, command: str | None = None) -> int:
        """Attach the local terminal to a shell (or command) in the guest; returns its exit code."""
        chan = self.transport.open_session()
        is_tty = sys.stdin.isatty()
        if is_tty:
            cols, rows = os.get_terminal_size()
            chan.get_pty(term=os.environ.get("TERM", "xterm"), width=cols, height=rows)
        if command:
            chan.exec_command(command)
        else:
            chan.invoke_shell()
        return _pump(chan, is_tty)


def _pump(chan: paramiko.Channel, is_tty: bool) -> int:
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if is_tty else None
    try:
        if is_tty:
            tty.setraw(fd)
        stdin_open = True
        while True:
            watch = [chan, fd] if stdin_open else [chan]
            ready, _, _ = select.select(watch, [], [])
            if chan in ready:
                while chan.recv_stderr_ready():
                    os.write(sys.stderr.fileno(), chan.recv_stderr(65536))
                data = chan.recv(65536)
                if not data:  # EOF: the remote side is done (its exit status follows)
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin_open and fd in ready:
                data = os.read(fd, 4096)
                if data:
                    chan.sendall(data)
                else:
                    stdin_open = False
                    chan.shutdown_write()
        return chan.recv_exit_status()
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        chan.close()


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
