"""Supervises the egress proxy: `mitmdump -s netpolicy/proxy_addon.py` as a child process.

`ProxyProcess.start()` spawns it and returns once every listen port accepts connections.
A monitor thread waits on the child; when it dies the supervisor calls `on_down` (the service
closes the nft egress gate: no egress while the proxy is down), restarts it after a growing delay
and calls `on_up` when it listens again. The child gets SIGTERM if the daemon dies
(PR_SET_PDEATHSIG), so a crashed daemon leaves no orphaned proxy behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance_base.errors import ApplianceError

log = logging.getLogger(__name__)

ADDON = Path(__file__).with_name("proxy_addon.py")
MAX_RESTART_DELAY = 30.0
LOG_ROTATE_BYTES = 10 << 20
PR_SET_PDEATHSIG = 1


class ProxyError(ApplianceError):
    """The egress proxy could not be started."""


def find_mitmdump() -> str:
    beside = Path(sys.executable).with_name("mitmdump")
    if beside.exists():
        return str(beside)
    import shutil

    found = shutil.which("mitmdump")
    if not found:
        raise ProxyError("mitmdump not found", hint="install the appliance's Python dependencies (mitmproxy)")
    return found


def mitmdump_argv(
    listen_host: str,
    proxy_port: int,
    transparent_port: int,
    confdir: str | os.PathLike,
    options: dict[str, object],
    mitmdump: str | None = None,
) -> list[str]:
    """The mitmdump command line: both modes on the bridge address, our addon, lazy connects."""
    argv = [
        mitmdump or find_mitmdump(),
        "--mode", f"regular@{listen_host}:{proxy_port}",
        "--mode", f"transparent@{listen_host}:{transparent_port}",
        "--set", f"confdir={confdir}",
        "--set", "connection_strategy=lazy",  # never contact an upstream before our decisions
        "--set", "upstream_cert=false",
        "--set", "flow_detail=0",  # never print headers (credentials)
        "--set", "termlog_verbosity=warn",
        "--set", "http3=false",
        "-s", str(ADDON),
    ]  # fmt: skip
    for key, value in options.items():
        argv += ["--set", f"{key}={value}"]
    return argv


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ProxyProcess:
    def __init__(
        self,
        argv: Sequence[str],
        ready: Sequence[tuple[str, int]],
        *,
        log_path: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        on_up: Callable[[], None] | None = None,
        on_down: Callable[[], None] | None = None,
        restart_delay: float = 1.0,
        ready_timeout: float = 30.0,
    ):
        self.argv = list(argv)
        self.ready = list(ready)
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self.on_up = on_up
        self.on_down = on_down
        self.restart_delay = restart_delay
        self.ready_timeout = ready_timeout
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._up = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def up(self) -> bool:
        return self._up

    def healthy(self) -> bool:
        proc = self._proc
        return bool(proc and proc.poll() is None and all(port_open(h, p) for h, p in self.ready))

    def start(self) -> None:
        """Spawn the child and wait until it listens; raise ProxyError if it does not.

        The child is spawned by the monitor thread, which lives until stop(): the kernel's parent-
        death signal follows the *thread* that forked, so a short-lived caller thread must not be
        the parent.
        """
        self._stopping.clear()
        self._started = threading.Event()
        self._start_error: ProxyError | None = None
        self._monitor = threading.Thread(target=self._run, name="egress-proxy-monitor", daemon=True)
        self._monitor.start()
        if not self._started.wait(self.ready_timeout + 10):
            self.stop()
            raise ProxyError("the egress proxy supervisor did not report back")
        if self._start_error is not None:
            self._monitor.join(10)
            raise self._start_error

    def _run(self) -> None:
        try:
            self._spawn()
            self._wait_ready()
        except ProxyError as e:
            self._terminate()
            self._start_error = e
            self._started.set()
            return
        self._set_up(True)
        self._started.set()
        self._watch()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._terminate(timeout)
        if self._monitor and self._monitor is not threading.current_thread():
            self._monitor.join(timeout)
        self._set_up(False)

    def _spawn(self) -> None:
        if self.log_path and self.log_path.exists() and self.log_path.stat().st_size > LOG_ROTATE_BYTES:
            self.log_path.replace(self.log_path.with_suffix(self.log_path.suffix + ".1"))
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            with self._lock:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    preexec_fn=_pdeathsig,
                )
        except OSError as e:
            raise ProxyError(f"cannot start the egress proxy: {e}") from e
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        log.info("egress proxy started (pid %d)", self._proc.pid)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        proc = self._proc
        assert proc is not None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ProxyError(
                    f"the egress proxy exited during startup (status {proc.returncode})",
                    hint=f"see {self.log_path}" if self.log_path else "run mitmdump by hand to see why",
                )
            if all(port_open(h, p, timeout=0.2) for h, p in self.ready):
                return
            self._stopping.wait(0.05)
            if self._stopping.is_set():
                raise ProxyError("stopped while starting")
        raise ProxyError(f"the egress proxy did not listen within {self.ready_timeout:.0f}s")

    def _terminate(self, timeout: float = 10.0) -> None:
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def _set_up(self, up: bool) -> None:
        if up == self._up:
            return
        callback = self.on_up if up else self.on_down
        if callback is not None:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failing callback must not kill supervision
                log.exception("egress proxy %s callback failed", "up" if up else "down")
        # The change is reported only once its callback ran (the egress gate is open, or closed),
        # so whoever waits for it finds the gate already in the state it implies.
        self._up = up

    def _watch(self) -> None:
        delay = self.restart_delay
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            status = proc.wait()
            if self._stopping.is_set():
                return
            log.error("egress proxy exited (status %s); egress is closed until it is back", status)
            self._set_up(False)
            while not self._stopping.is_set():
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, MAX_RESTART_DELAY)
                try:
                    self._spawn()
                    self._wait_ready()
                except ProxyError as e:
                    log.error("egress proxy restart failed: %s", e)
                    self._terminate()
                    continue
                self.restarts += 1
                delay = self.restart_delay
                self._set_up(True)
                break
