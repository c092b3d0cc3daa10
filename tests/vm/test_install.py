"""`scripts/install` as an admin runs it, into a scratch prefix, config dir, unit dir and state dir:
the service started the way its unit starts it, a sign-in over HTTPS (console and `appliance
login` pinning the printed fingerprint), a session with the `command` agent, then the install run
again (the upgrade path): config, users, tokens and sessions kept, the service back up."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from appliance_world import state_dir
from daemon_process import cleanup, wait_for
from helpers import ROOT, shared_image_dir

pytestmark = [pytest.mark.vm, pytest.mark.root]

NET = {"APPLIANCE_BRIDGE": "apltesti", "APPLIANCE_SUBNET": "10.230.0.0/24", "APPLIANCE_TAP_PREFIX": "apli",
       "APPLIANCE_EGRESS_TABLE": "applinst"}
# what the admin edits in the installed config before the first start (the template's commented lines)
SETTINGS = {"bridge": '"apltesti"', "subnet": '"10.230.0.0/24"', "tap_prefix": '"apli"',
            "egress_table": '"applinst"', "default_profile": '"minimal"', "memory_mb": "768",
            "max_running_sessions": "1"}
MIGRATIONS_TABLE = "schema_migration"  # appliance.db.SchemaMigration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_settings(conf: Path, settings: dict[str, str]) -> None:
    text = conf.read_text()
    for key, value in settings.items():
        text, n = re.subn(rf"^# {key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, f"the config template has no commented '{key}' line"
    conf.write_text(text)


def unit_command(unit: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart and Environment of a systemd unit: how systemd would start it."""
    argv, env = None, {}
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
        elif line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    assert argv, f"no ExecStart in {unit}"
    return argv, env


class Browser:
    """Just enough of a browser over HTTPS: this CA only, cookies kept, redirects not followed."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, cert: Path):
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(cert))),
            urllib.request.HTTPCookieProcessor(self.cookies), self._NoRedirect())

    def request(self, url: str, form: dict | None = None) -> tuple[int, dict, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(url, data=data, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:  # 3xx (not followed) and errors
            return e.code, dict(e.headers), e.read().decode(errors="replace")


class Service:
    """The daemon as its unit runs it (no systemd here: the same command and environment)."""

    def __init__(self, unit: Path, log: Path, port: int, cert: Path):
        self.unit, self.log, self.port, self.cert, self.proc = unit, log, port, cert, None

    def start(self) -> None:
        argv, env = unit_command(self.unit)
        self.proc = subprocess.Popen(argv, env={"PATH": os.environ["PATH"], **env}, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, cwd="/")

        def up():
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-4000:]
            try:
                return Browser(self.cert).request(f"https://127.0.0.1:{self.port}/healthz")[0] == 200
            except OSError:
                return False

        wait_for(up, timeout=90, what="the service answering over HTTPS")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # what systemd sends (KillMode=mixed)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_install_sign_in_run_a_session_then_upgrade_keeping_everything(hv):
    scratch = state_dir("install")
    prefix, etc, units, state, home = (scratch / n for n in ("opt", "etc", "units", "state", "home"))
    home.mkdir()
    port = free_port()
    install_env = {**os.environ, "APPLIANCE_PREFIX": str(prefix), "APPLIANCE_ETC": str(etc),
                   "APPLIANCE_UNIT_DIR": str(units), "APPLIANCE_SYSCTL_FILE": str(scratch / "60-appliance.conf"),
                   "APPLIANCE_LISTEN": f"127.0.0.1:{port}", "APPLIANCE_STATE_DIR": str(state),
                   "APPLIANCE_IMAGE_DIR": str(shared_image_dir()), "APPLIANCE_PROFILES": "minimal",
                   # guest templates' host pieces into the scratch dir too, not the host's /etc and /dev/shm
                   "APPLIANCE_TEMPLATE_DIR": str(scratch / "templates"),
                   "APPLIANCE_TMPFILES_FILE": str(scratch / "tmpfiles.conf"),
                   "APPLIANCE_APPARMOR_DIR": str(scratch / "apparmor.d")}
    for name in ("APPLIANCE_CONFIG", "VIRTUAL_ENV"):
        install_env.pop(name, None)
    cli_env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    appliance = str(prefix / ".venv" / "bin" / "appliance")
    conf = etc / "appliance.toml"
    service = Service(units / "appliance.service", scratch / "service.log", port, etc / "tls" / "cert.pem")

    def install() -> str:
        run = subprocess.run([str(ROOT / "scripts" / "install")], env=install_env, capture_output=True,
                             text=True, timeout=1800)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout + run.stderr

    def cli(*argv, stdin=None, cwd=None, check=True):
        run = subprocess.run([appliance, *argv], env=cli_env, input=stdin, capture_output=True, text=True,
                             timeout=120, cwd=cwd)
        assert run.returncode == 0 or not check, f"appliance {' '.join(argv)}: {run.stdout}{run.stderr}"
        return run

    upstream = scratch / "upstream" / "app.git"
    try:
        # the repository sessions work on: a bare repository on this server
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(upstream)], check=True)
        seed = scratch / "seed"
        subprocess.run(["git", "clone", "-q", str(upstream), str(seed)], check=True, capture_output=True)
        (seed / "README.md").write_text("hi\n")
        git = ["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "first"], check=True)
        subprocess.run([*git, "push", "-q", "origin", "main"], check=True, capture_output=True)

        first = install()
        password = re.search(r"^Password:\s+(\S+)", first, re.M).group(1)
        token = re.search(r"^API token:\s+(\S+)", first, re.M).group(1)
        fingerprint = re.search(r"fingerprint: (\S+)", first).group(1)
        assert f"URL: https://127.0.0.1:{port}/" in first
        assert conf.exists() and (etc / "tls" / "cert.pem").exists() and (units / "appliance.service").exists()
        assert f"APPLIANCE_CONFIG={conf}" in (units / "appliance.service").read_text()
        set_settings(conf, SETTINGS)
        config_before = conf.read_bytes()

        service.start()
        # the console over HTTPS: the certificate the install made, a password sign-in, a Secure cookie
        web = Browser(service.cert)
        page = web.request(f"https://127.0.0.1:{port}/login")[2]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        sign_in = {"username": "admin", "password": password, **({"csrf_token": csrf.group(1)} if csrf else {})}
        status, headers, body = web.request(f"https://127.0.0.1:{port}/login", sign_in)
        assert status == 302, body[:500]
        assert "secure" in headers.get("Set-Cookie", "").lower()
        assert web.request(f"https://127.0.0.1:{port}/")[0] == 200
        # the engineer's CLI pins the fingerprint the install printed
        out = cli("login", f"https://127.0.0.1:{port}", "--token-stdin", "--fingerprint", fingerprint,
                  stdin=token + "\n").stdout
        assert "pinned" in out, out
        # the admin adds the repository on the server
        admin = subprocess.run([appliance, "repo", "add", "acme/app", str(upstream)], capture_output=True,
                               text=True, env={**cli_env, "APPLIANCE_CONFIG": str(conf)}, timeout=120)
        assert admin.returncode == 0, admin.stdout + admin.stderr

        work = scratch / "work"
        subprocess.run(["git", "clone", "-q", str(upstream), str(work)], check=True, capture_output=True)
        started = cli("remote", "echo installed > proof.txt", "--agent", "command", cwd=work).stdout
        sid = re.search(r"ses-[0-9a-f]+", started).group(0)

        def finished():
            rows = {s["id"]: s for s in json.loads(cli("tasks", "--json").stdout)}
            return rows[sid]["status"] in ("idle", "failed", "completed") and rows[sid]

        session = wait_for(finished, timeout=600, what="the session's first turn")
        assert session["status"] == "idle", cli("logs", sid, check=False).stdout[-3000:]
        assert "proof.txt" in cli("diff", sid).stdout
        service.stop()

        # the upgrade: the same command again, on the same prefix
        again = install()
        assert "keeping" in again and "First admin" not in again and "Password:" not in again
        assert conf.read_bytes() == config_before, "the admin's config is kept as it was"
        service.start()
        rows = cli("tasks", "--json").stdout
        assert sid in rows, "the session (and the CLI's token) survived the upgrade"
        assert "proof.txt" in cli("diff", sid).stdout
        web.cookies.clear()
        page = web.request(f"https://127.0.0.1:{port}/login")[2]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        sign_in.update({"csrf_token": csrf.group(1)} if csrf else {})
        assert web.request(f"https://127.0.0.1:{port}/login", sign_in)[0] == 302, "the password still signs in"
        # and the schema is at the newest migration
        with sqlite3.connect(state / "appliance.db") as db:
            applied = {row[0] for row in db.execute(f"select name from {MIGRATIONS_TABLE}")}
        newest = sorted(p.stem for p in (ROOT / "appliance" / "migrations").glob("m[0-9]*.py"))[-1]
        assert newest in applied, applied
    finally:
        service.stop()
        cleanup(state, hv, NET)
        time.sleep(0.5)
        shutil.rmtree(scratch, ignore_errors=True)
