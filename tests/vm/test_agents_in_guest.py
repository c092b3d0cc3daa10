"""The real Claude Code CLI in a guest: its model API requests leave through the egress proxy, which
injects the key, to a stand-in speaking the Anthropic Messages API as api.anthropic.com (TLS, in a
namespace of our own). The scripted sequence reads a file, edits it and runs the tests; the edit
must land on the pushed branch, and the guest must never have held the key."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

import integration.netns as N
from appliance.accounts.models import User
from appliance.environments.models import Environment
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.sessions import transcripts
from appliance.sessions.models import Event, Session, Status
from appliance.sessions.service import NewSession
from appliance_world import appliance_world, remove, state_dir
from gitserver import GitServer
from helpers import ROOT
from modelapi import AnthropicStandIn, text, tool_use
from netpolicy.service import CREDENTIAL_PLACEHOLDER

pytestmark = [pytest.mark.vm, pytest.mark.root]

CLAUDE = ROOT / "state" / "agents" / "npm" / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"
MODEL_IP = "203.0.113.20"
UPLINK = "aplvmup1"
SECRET = "sk-ant-api03-" + os.urandom(12).hex()
WORKDIR = "/home/agent/work/app"


@pytest.fixture(scope="module")
def model_api():
    """api.anthropic.com, as far as the proxy can tell: a TLS stand-in at MODEL_IP:443 in a netns."""
    if not CLAUDE.exists():
        pytest.fail(f"{CLAUDE} is missing: scripts/setup installs the coding agents")
    work = Path(tempfile.mkdtemp(prefix="appliance-model-", dir="/var/tmp"))
    ns = N.Netns(f"aplvm-model-{os.getpid()}")
    standin = None
    try:
        N.sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        N.sh("ip", "addr", "add", "198.51.100.1/30", "dev", UPLINK)
        N.sh("ip", "link", "set", UPLINK, "up")
        ns.ip("addr", "add", "198.51.100.2/30", "dev", "eth0")
        ns.ip("addr", "add", f"{MODEL_IP}/32", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        N.sh("ip", "route", "add", f"{MODEL_IP}/32", "via", "198.51.100.2")
        ca, cert, key = N.make_test_pki(work / "pki", ["api.anthropic.com"], [MODEL_IP])
        standin = AnthropicStandIn(host=MODEL_IP, port=443, tls=(str(cert), str(key)))
        ns.run(standin.start)  # its listening socket belongs to the namespace
        yield standin, ca
    finally:
        if standin is not None:
            standin.stop()
        N.sh("ip", "route", "del", f"{MODEL_IP}/32", check=False)
        N.sh("ip", "link", "del", UPLINK, check=False)
        ns.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def world(model_api, hv):
    standin, ca = model_api
    state = state_dir("claude")
    creds = state / "credentials.toml"
    creds.write_text(f'["api.anthropic.com"]\nx-api-key = "{SECRET}"\n')
    creds.chmod(0o600)
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/app", {
        "app.py": "def add(a, b):\n    return a - b\n",
        "test_app.py": "from app import add\nassert add(2, 3) == 5\nprint('TESTS-OK')\n",
        ".gitignore": "__pycache__/\n",
    })
    try:
        with appliance_world(hv, state, bridge="apltest5", subnet="10.220.0.0/24", tap_prefix="aplc",
                             egress_table="applclaude", static_hosts=f"{MODEL_IP} api.anthropic.com",
                             credentials_file=creds, upstream_ca_file=ca, dns_upstream="127.0.0.1:9",
                             memory_mb=1536) as w:
            engine = w.engine
            setup = engine.runner._setup
            packed = gzip.compress(CLAUDE.read_bytes(), compresslevel=1)  # 245 MB -> ~87 MB over SSH

            def setup_with_claude(guest, session, workdir, turn):
                # The `general` image ships Claude Code; CI boots `minimal`, so bring the same binary in.
                guest.upload(packed, "/tmp/claude.gz", mode=0o644)
                r = guest.exec("gzip -d /tmp/claude.gz && sudo install -m 755 /tmp/claude /usr/local/bin/claude"
                               " && rm /tmp/claude")
                assert r.exit_code == 0, r.stderr
                setup(guest, session, workdir, turn)

            engine.runner._setup = setup_with_claude
            engine.start()
            user = User.create(username="alice")
            Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                              credential_secret=upstream.token)
            Environment.create(owner=user, name="dev", is_default=True, variables="CLAUDE_CODE_MAX_RETRIES=0\n")
            yield engine, user, upstream, standin, w.sandboxes
    finally:
        upstream.close()
        remove(state)


def wait_idle(engine, sid, timeout=420) -> Session:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = Session.get_by_id(sid)
        if s.status in (Status.IDLE, Status.FAILED) and sid not in engine.running_sessions():
            return s
        time.sleep(1)
    raise AssertionError(f"still {Session.get_by_id(sid).status}")


def events(sid, kind):
    return [e.data for e in Event.select().where((Event.session == sid) & (Event.kind == kind)).order_by(Event.id)]


def test_claude_code_edits_through_the_proxy_and_the_key_never_enters_the_guest(world):
    engine, user, upstream, standin, mgr = world
    target = f"{WORKDIR}/app.py"
    standin.script(
        tool_use("Read", {"file_path": target}, text="Let me look."),
        tool_use("Edit", {"file_path": target, "old_string": "return a - b", "new_string": "return a + b"}),
        tool_use("Bash", {"command": "python3 test_app.py", "description": "run the tests"}),
        text("Fixed add() and the tests pass."),
    )
    s = engine.service.create(user, NewSession("acme/app", "Fix add()", agent="claude-code"))
    s = wait_idle(engine, s.id)
    assert s.status == Status.IDLE, [(e.kind, e.data) for e in Event.select().where(Event.session == s.id)][-12:]

    assert "return a + b" in upstream.read_file("acme/app", s.work_branch, "app.py")
    assert [u["name"] for u in events(s.id, "tool_use")] == ["Read", "Edit", "Bash"]
    results = events(s.id, "tool_result")
    assert any("TESTS-OK" in (r.get("output") or "") for r in results), results
    assert events(s.id, "turn_result")[-1]["ok"] is True
    assert (s.diff_added, s.diff_removed) == (1, 1)

    agent_requests = standin.agent_requests
    assert agent_requests, "the CLI reached the model API"
    assert all(r.headers.get("x-api-key") == SECRET for r in standin.requests), "the proxy injected the real key"
    with mgr.ssh(Sandbox.get_by_id(s.sandbox_id)) as guest:
        guest.upload(SECRET.encode() + b"\n", "/dev/shm/needle", mode=0o600)
        leak = guest.exec("sudo grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -f /dev/shm/needle / "
                          "2>/dev/null; sudo sh -c 'cat /proc/*/environ' | tr '\\0' '\\n' | grep -c -f /dev/shm/needle;"
                          " rm /dev/shm/needle")
        placeholder = guest.exec(f"grep -rl {CREDENTIAL_PLACEHOLDER} /home/agent/.claude 2>/dev/null | head -1")
    assert leak.text.strip().splitlines() == ["0"], leak.text
    assert placeholder.exit_code in (0, 1)

    # the next turn resumes the CLI's own conversation
    standin.script(text("Still fixed."))
    engine.service.message(user, s.id, "Is it still fixed?")
    s2 = wait_idle(engine, s.id)
    assert s2.status == Status.IDLE and s2.agent_session_id == s.agent_session_id
    last = standin.agent_requests[-1].body["messages"]
    assert any("Fix add()" in str(m.get("content")) for m in last), "the resumed request carries the first turn"
    stored = transcripts.stored_path(engine.config.state_dir, s.id)
    assert stored.exists() and b"Fix add()" in stored.read_bytes(), "the host keeps the transcript"

    # the guest expires; the next turn boots a fresh one, restores the transcript and resumes
    old = s2.sandbox_id
    Session.update(updated_at=Session.updated_at - 10**6).where(Session.id == s.id).execute()
    assert s.id in engine.expire_idle()
    standin.script(text("Resumed in a new guest."))
    engine.service.message(user, s.id, "Are you still there?")
    s3 = wait_idle(engine, s.id)
    assert s3.status == Status.IDLE and s3.sandbox_id not in (None, old)
    last = standin.agent_requests[-1].body["messages"]
    assert any("Fix add()" in str(m.get("content")) for m in last), "the conversation survived the new guest"
