"""The real coding agents in a guest — Claude Code and Codex: their model API requests leave through
the egress proxy, which injects the key, to stand-ins speaking the Anthropic Messages API as
api.anthropic.com and the Responses API as api.openai.com (TLS, in a namespace of our own). The
scripted sequences read a file, edit it and run the tests; the edit must land on the pushed branch,
and the guest must never have held a key."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import integration.netns as N
import pytest

from appliance.accounts.models import User
from appliance.environments.models import Environment
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.sandbox.guest import GuestLayout
from appliance.sessions import transcripts
from appliance.sessions.models import Event, Session, Status, Turn, TurnStatus
from appliance.sessions.service import NewSession
from netpolicy.service import CREDENTIAL_PLACEHOLDER

from appliance_world import AGENT_TIMEOUT, appliance_world, remove, state_dir, wait_idle
from appliance_world import session_events as events
from daemon_process import wait_for
from gitserver import GitServer
from modelapi import AnthropicStandIn, ResponsesStandIn, apply_patch, shell, text, tool_use

pytestmark = [pytest.mark.vm, pytest.mark.root]

ANTHROPIC_IP, OPENAI_IP = "203.0.113.20", "203.0.113.21"
UPLINK = "aplvmup1"
ANTHROPIC_KEY = "sk-ant-api03-" + os.urandom(12).hex()
OPENAI_KEY = "sk-proj-" + os.urandom(12).hex()
BRIDGE, SUBNET = "apltest5", "10.220.0.0/24"
BRIDGE_ADDRESS = "10.220.0.1"
WORKDIR = "/home/agent/work/app"


@pytest.fixture(scope="module")
def model_apis():
    """api.anthropic.com and api.openai.com, as far as the proxy can tell: TLS stand-ins in a netns."""
    # before anything exists: no host route (nor the package mirror) may be under the /32s below,
    # which also makes the cleanup's `ip route del` safe
    N.check_test_routes([ANTHROPIC_IP, OPENAI_IP])
    work = Path(tempfile.mkdtemp(prefix="appliance-model-", dir="/var/tmp"))
    ns = N.Netns(f"aplvm-model-{os.getpid()}")
    standins = []
    try:
        N.sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        N.sh("ip", "addr", "add", "198.51.100.1/30", "dev", UPLINK)
        N.sh("ip", "link", "set", UPLINK, "up")
        ns.ip("addr", "add", "198.51.100.2/30", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        for ip in (ANTHROPIC_IP, OPENAI_IP):
            ns.ip("addr", "add", f"{ip}/32", "dev", "eth0")
            N.sh("ip", "route", "add", f"{ip}/32", "via", "198.51.100.2")
        ca, cert, key = N.make_test_pki(work / "pki", ["api.anthropic.com", "api.openai.com"],
                                        [ANTHROPIC_IP, OPENAI_IP])
        anthropic = AnthropicStandIn(host=ANTHROPIC_IP, port=443, tls=(str(cert), str(key)))
        standins.append(anthropic)
        ns.run(anthropic.start)  # its listening socket belongs to the namespace
        openai = ResponsesStandIn(host=OPENAI_IP, port=443, tls=(str(cert), str(key)))
        standins.append(openai)
        ns.run(openai.start)
        yield {"claude-code": anthropic, "codex": openai}, ca
    finally:
        for standin in standins:
            standin.stop()
        for ip in (ANTHROPIC_IP, OPENAI_IP):
            N.sh("ip", "route", "del", f"{ip}/32", check=False)
        N.sh("ip", "link", "del", UPLINK, check=False)
        ns.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def world(model_apis, hv):
    standins, ca = model_apis
    state = state_dir("agents")
    creds = state / "credentials.toml"
    creds.write_text(f'["api.anthropic.com"]\nx-api-key = "{ANTHROPIC_KEY}"\n'
                     f'["api.openai.com"]\nauthorization = "Bearer {OPENAI_KEY}"\n')
    creds.chmod(0o600)
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/app", {
        "app.py": "def add(a, b):\n    return a - b\n",
        "test_app.py": "from app import add\nassert add(2, 3) == 5\nprint('TESTS-OK')\n",
        ".gitignore": "__pycache__/\n",
    })
    try:
        # gpt-5.5: a model Codex offers plain function tools (shell, apply_patch) that the stand-in
        # scripts; its default wraps every tool in a JavaScript "code mode" tool.
        with appliance_world(hv, state, bridge=BRIDGE, subnet=SUBNET, tap_prefix="aplc",
                             egress_table="applagents",
                             static_hosts=f"{ANTHROPIC_IP} api.anthropic.com; {OPENAI_IP} api.openai.com",
                             credentials_file=creds, upstream_ca_file=ca, dns_upstream="127.0.0.1:9",
                             memory_mb=1536, codex_model="gpt-5.5") as w:
            # the image carries both CLIs: nothing is brought into the guest
            engine = w.engine
            engine.start()
            user = User.create(username="alice")
            Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                              credential_secret=upstream.token)
            Environment.create(owner=user, name="dev", is_default=True, variables="CLAUDE_CODE_MAX_RETRIES=0\n")
            yield engine, user, upstream, standins, w.sandboxes
    finally:
        upstream.close()
        remove(state)






def assert_no_key_in_the_guest(mgr, session: Session, home_dir: str) -> None:
    """Neither key in any file or process environment of the guest; the agent held the placeholder."""
    with mgr.ssh(Sandbox.get_by_id(session.sandbox_id)) as guest:
        guest.upload(f"{ANTHROPIC_KEY}\n{OPENAI_KEY}\n".encode(), "/dev/shm/needle", mode=0o600)
        leak = guest.exec("sudo grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -f /dev/shm/needle / "
                          "2>/dev/null; sudo sh -c 'cat /proc/*/environ' | tr '\\0' '\\n' | grep -c -f /dev/shm/needle;"
                          " rm /dev/shm/needle")
        placeholder = guest.exec(f"grep -rl {CREDENTIAL_PLACEHOLDER} {home_dir} 2>/dev/null | head -1")
    assert leak.text.strip().splitlines() == ["0"], leak.text
    assert placeholder.exit_code in (0, 1)


def expire_the_guest(engine, session_id: str) -> None:
    Session.update(updated_at=Session.updated_at - 10**6).where(Session.id == session_id).execute()
    assert session_id in engine.expire_idle()


def test_claude_code_edits_through_the_proxy_and_the_key_never_enters_the_guest(world):
    engine, user, upstream, standins, mgr = world
    standin = standins["claude-code"]
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

    assert standin.agent_requests, "the CLI reached the model API"
    assert all(r.headers.get("x-api-key") == ANTHROPIC_KEY for r in standin.requests), "the proxy injected the key"
    assert_no_key_in_the_guest(mgr, s, "/home/agent/.claude")

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
    expire_the_guest(engine, s.id)
    standin.script(text("Resumed in a new guest."))
    engine.service.message(user, s.id, "Are you still there?")
    s3 = wait_idle(engine, s.id)
    assert s3.status == Status.IDLE and s3.sandbox_id not in (None, old)
    last = standin.agent_requests[-1].body["messages"]
    assert any("Fix add()" in str(m.get("content")) for m in last), "the conversation survived the new guest"


def test_codex_edits_through_the_proxy_and_resumes_in_a_fresh_guest(world):
    engine, user, upstream, standins, mgr = world
    standin = standins["codex"]
    patch = "*** Begin Patch\n*** Update File: app.py\n@@\n-    return a - b\n+    return a + b\n*** End Patch\n"
    standin.script(
        shell("cat app.py", text="Let me look."),
        apply_patch(patch),
        shell("python3 test_app.py"),
        text("Fixed add() and the tests pass."),
    )
    s = engine.service.create(user, NewSession("acme/app", "Fix add() with codex", agent="codex"))
    s = wait_idle(engine, s.id)
    assert s.status == Status.IDLE, [(e.kind, e.data) for e in Event.select().where(Event.session == s.id)][-12:]

    assert "return a + b" in upstream.read_file("acme/app", s.work_branch, "app.py")
    commands = [(c["command"], c.get("exit_code")) for c in events(s.id, "command")]
    assert commands == [("cat app.py", 0), ("python3 test_app.py", 0)], commands
    assert any("TESTS-OK" in (c.get("output") or "") for c in events(s.id, "command"))
    assert (s.diff_added, s.diff_removed) == (1, 1)
    assert s.agent_session_id

    assert standin.agent_requests, "the CLI reached the model API"
    assert {r.headers.get("authorization") for r in standin.requests} == {f"Bearer {OPENAI_KEY}"}, \
        "the proxy replaced the placeholder with the real key"
    assert_no_key_in_the_guest(mgr, s, "/home/agent/.codex")
    where = transcripts.stored_guest_path(engine.config.state_dir, s.id, GuestLayout.from_config(engine.config))
    assert where and where.endswith(f"-{s.agent_session_id}.jsonl"), where

    # the guest expires; the next turn boots a fresh one with the rollout restored and resumes the thread
    old = s.sandbox_id
    expire_the_guest(engine, s.id)
    standin.script(text("Resumed in a new guest."))
    engine.service.message(user, s.id, "Are you still there?")
    s2 = wait_idle(engine, s.id)
    assert s2.status == Status.IDLE and s2.sandbox_id not in (None, old), s2.error
    assert s2.agent_session_id == s.agent_session_id
    texts = standin.agent_requests[-1].input_texts()
    assert texts[-1] == "Are you still there?" and "Fix add() with codex" in texts, texts


def test_steering_reaches_the_running_claude_code_and_interrupt_keeps_the_session(world):
    engine, user, upstream, standins, mgr = world
    standin = standins["claude-code"]
    standin.script(
        tool_use("Bash", {"command": "sleep 30; echo waited", "description": "wait a while"}),
        text("Done waiting; noted about the docs."),
    )
    s = engine.service.create(user, NewSession("acme/app", "Wait a while", agent="claude-code"))
    wait_for(lambda: events(s.id, "tool_use"), timeout=AGENT_TIMEOUT, what="the agent's first tool call")

    # a message while the tool runs goes to the running agent: the same turn, not a queued one
    steered = engine.service.message(user, s.id, "Also mention the docs")
    assert (steered.number, steered.status) == (1, TurnStatus.RUNNING)
    s = wait_idle(engine, s.id)
    assert s.status == Status.IDLE, s.error
    after_tool = standin.agent_requests[-1].body["messages"]
    assert "Also mention the docs" in json.dumps(after_tool), "the model saw the message before the turn ended"
    assert [t.status for t in Turn.select().where(Turn.session == s.id)] == [TurnStatus.COMPLETED]
    assert {"turn": 1, "text": "Also mention the docs", "source": "steer"} in events(s.id, "user_message")

    # interrupt: the running tool stops, the turn ends interrupted, the guest and the session stay
    standin.script(
        tool_use("Bash", {"command": "echo started > started.txt && sleep 600", "description": "a long job"}),
        text("never reached"),
    )
    engine.service.message(user, s.id, "Run the long job")
    wait_for(lambda: len(events(s.id, "tool_use")) == 2, timeout=AGENT_TIMEOUT, what="the long job's tool call")
    guest_before = Session.get_by_id(s.id).sandbox_id
    with mgr.ssh(Sandbox.get_by_id(guest_before)) as guest:  # the job is under way
        wait_for(lambda: guest.exec(f"test -f {WORKDIR}/started.txt").exit_code == 0, timeout=120,
                 what="the long job to start")
    engine.service.interrupt(user, s.id)
    s = wait_idle(engine, s.id, timeout=120)
    second = Turn.get((Turn.session == s.id) & (Turn.number == 2))
    assert second.status == TurnStatus.INTERRUPTED and s.status == Status.IDLE, (second.status, s.status, s.error)
    assert s.sandbox_id == guest_before, "the guest stays"
    assert "started" in upstream.read_file("acme/app", s.work_branch, "started.txt"), "what it did is pushed"
    with mgr.ssh(Sandbox.get_by_id(s.sandbox_id)) as guest:
        assert guest.exec("pgrep -u agent -f 'sleep 600'").exit_code == 1, "the long job is gone"

    # and the next message is a turn like any other
    standin.script(text("Back to work."))
    engine.service.message(user, s.id, "Still there?")
    s = wait_idle(engine, s.id)
    assert s.status == Status.IDLE
    assert Turn.get((Turn.session == s.id) & (Turn.number == 3)).status == TurnStatus.COMPLETED
