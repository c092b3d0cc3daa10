"""`appliance ssh SESSION` end to end: a real session (command agent, real guest, real upstream),
the Flask app on loopback, and the real CLI in a child process with a pipe as its stdin. The
"laptop" only ever talks to 127.0.0.1:<app port>; the appliance reaches the guest on the bridge."""

from __future__ import annotations

import base64
import http.client
import os
import subprocess
import sys
import threading
import time

import pytest
from werkzeug.serving import make_server

from appliance.accounts.models import ApiToken, User
from appliance.environments.models import Environment
from appliance.repos.models import Repository
from appliance.sessions.models import Event, Session, Status
from appliance.sessions.service import NewSession

from appliance_world import appliance_world, remove, state_dir
from gitserver import GitServer
from helpers import ROOT

pytestmark = [pytest.mark.vm, pytest.mark.root]

COMMAND = b"echo via-appliance-$((6*7)); exit 3\n"

# The CLI as the laptop runs it, with every socket connection and name lookup it makes recorded
# (Python audit events) so the test can prove it never reaches past the app's loopback port.
CLI = r"""
import sys
log = open(sys.argv[1], "a")
def hook(event, args):
    if event == "socket.connect":
        log.write(repr(args[1]) + "\n"); log.flush()
    elif event == "socket.getaddrinfo":
        log.write(repr(("getaddrinfo", args[0], args[1])) + "\n"); log.flush()
sys.addaudithook(hook)
from appliance.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def world(hv):
    from appliance.services import Services
    from webui import create_app

    state = state_dir("sshapp")
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/app", {"README.md": "hi\n"})
    try:
        with appliance_world(hv, state, bridge="apltest8", subnet="10.224.0.0/24", tap_prefix="aplh",
                             egress_table="applssh", max_running_sessions=1, idle_guest_timeout=3600.0,
                             memory_mb=768, dns_upstream="127.0.0.1:9") as w:
            w.engine.start()
            alice, bob = User.create(username="alice"), User.create(username="bob")
            tokens = {"alice": ApiToken.issue(alice), "bob": ApiToken.issue(bob)}
            Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                              credential_secret=upstream.token, credential_username="x-access-token")
            Environment.create(owner=alice, name="dev", is_default=True)
            session = w.engine.service.create(alice, NewSession("acme/app", "first", agent="command",
                                                                command="echo ready > ready.txt"))
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                s = Session.get_by_id(session.id)
                if s.status in (Status.IDLE, *Status.FINAL) and s.id not in w.engine.running_sessions():
                    break
                time.sleep(0.5)
            s = Session.get_by_id(session.id)
            assert s.status == Status.IDLE, [(e.kind, e.data) for e in Event.select().where(Event.session == s.id)][-10:]
            app = create_app(Services.build(w.cfg, sessions=w.engine.service))
            server = make_server("127.0.0.1", 0, app, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                yield {"port": server.server_port, "url": f"http://127.0.0.1:{server.server_port}",
                       "tokens": tokens, "session": s, "state": state, "cfg": w.cfg}
            finally:
                server.shutdown()
                thread.join(10)
    finally:
        upstream.close()
        remove(state)


def run_cli(world, who: str, *argv: str, stdin: bytes | None = None, keep_open: bool = False, timeout: float = 120):
    """`appliance ARGV` as a child process logged in as `who`; returns (rc, stdout, stderr, connections).
    keep_open: stdin stays open until the client exits (an interactive user who has not hung up)."""
    home = world["state"] / f"laptop-{who}"
    home.mkdir(exist_ok=True)
    conns = home / "connections.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "APPLIANCE_CLIENT_CONFIG": str(home / "client.json"), "PYTHONPATH": str(ROOT)}
    if not (home / "client.json").exists():
        p = subprocess.run([sys.executable, "-c", CLI, str(conns), "login", world["url"], "--token-stdin"],
                           input=(world["tokens"][who] + "\n").encode(), env=env, cwd=home,
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr.decode()
    before = conns.read_text().splitlines() if conns.exists() else []
    proc = subprocess.Popen([sys.executable, "-c", CLI, str(conns), *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=home)
    if keep_open:
        chunks = {"out": [], "err": []}
        readers = [threading.Thread(target=lambda k, f: chunks[k].extend(iter(lambda: f.read1(65536), b"")),
                                    args=(k, f), daemon=True) for k, f in (("out", proc.stdout), ("err", proc.stderr))]
        for r in readers:
            r.start()
        proc.stdin.write(stdin or b"")
        proc.stdin.flush()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for r in readers:
            r.join(10)
        proc.stdin.close()
        out, err = b"".join(chunks["out"]), b"".join(chunks["err"])
    else:
        try:
            out, err = proc.communicate(stdin or b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    after = conns.read_text().splitlines()
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), after[len(before):]


def assert_only_loopback_app(world, conns: list[str]) -> None:
    assert conns, "the client made no connection at all?"
    for line in conns:
        entry = eval(line)  # noqa: S307 - our own repr() lines
        if entry[0] == "getaddrinfo":
            assert entry[1] == "127.0.0.1", conns
        else:
            assert entry[:2] == ("127.0.0.1", world["port"]), conns
    assert not any(str(world["cfg"].bridge_address) in line for line in conns)


def test_appliance_ssh_runs_a_shell_in_the_guest_and_propagates_the_exit_status(world):
    sid = world["session"].id
    t0 = time.monotonic()
    rc, out, err, conns = run_cli(world, "alice", "ssh", sid, stdin=COMMAND, keep_open=True)
    assert "via-appliance-42" in out, (rc, out, err)
    assert rc == 3, (rc, out, err)
    assert time.monotonic() - t0 < 90
    assert_only_loopback_app(world, conns)


def test_appliance_ssh_with_stdin_closed_right_away(world):
    """`echo CMD | appliance ssh SESSION`: stdin ends at once, the remote shell must still finish."""
    rc, out, err, conns = run_cli(world, "alice", "ssh", world["session"].id, stdin=COMMAND)
    assert "via-appliance-42" in out, (rc, out, err)
    assert rc == 3, (rc, out, err)
    assert_only_loopback_app(world, conns)


def test_another_users_token_is_refused(world):
    rc, out, err, _ = run_cli(world, "bob", "ssh", world["session"].id, stdin=COMMAND)
    assert rc != 0 and "via-appliance" not in out, (rc, out, err)
    assert "no session" in err, err
    assert handshake(world, world["tokens"]["bob"]) == 404


def test_no_token_is_401(world):
    assert handshake(world, None) == 401


def handshake(world, token: str | None) -> int:
    """A raw websocket upgrade request to the terminal route: the HTTP status it gets."""
    conn = http.client.HTTPConnection("127.0.0.1", world["port"], timeout=30)
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("GET", f"/api/v1/sessions/{world['session'].id}/terminal", headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status
