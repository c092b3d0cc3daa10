"""A new user's first session, as the product promises it: the default image (`general`), the
default agent (the real Claude Code CLI in the image, against a model API stand-in), a repository
with the documented SessionStart hook (`.claude/settings.json`, matcher `startup`) that runs
`pip install -r requirements.txt` and `npm install` through the egress proxy against PyPI and npm
stand-ins on the test internet, and a `CLAUDE.md`. The agent edits code, runs the tests (which
import what the hook installed) and the branch is pushed. When a later turn gets a fresh guest, the
`startup` hook runs again there (a resumed Claude Code conversation runs only `resume` hooks)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import integration.netns as N
import pytest
from package_registries import NAMES as REGISTRY_NAMES
from package_registries import PackageRegistries

from appliance.accounts.models import User
from appliance.environments.models import Environment
from appliance.repos.models import Repository
from appliance.sessions.models import Event, Session, Status
from appliance.sessions.service import NewSession

from appliance_world import appliance_world, remove, state_dir, wait_idle
from appliance_world import session_events as events
from gitserver import GitServer
from modelapi import AnthropicStandIn, text, tool_use

pytestmark = [pytest.mark.vm, pytest.mark.root]

ANTHROPIC_IP, REGISTRY_IP = "203.0.113.22", "203.0.113.30"
UPLINK = "aplvmup2"
KEY = "sk-ant-api03-" + os.urandom(12).hex()
WORKDIR = "/home/agent/work/shop"  # the checkout: ~/work/<repository name>

HOOK = """#!/bin/bash
# SessionStart (startup): the project's dependencies, as the product's docs show it
set -e
cd "$CLAUDE_PROJECT_DIR"
pip install -r requirements.txt
npm install --no-audit --no-fund
echo "hook ran in $(hostname)" >> "$HOME/hook-runs.log"
"""
SETTINGS = {"hooks": {"SessionStart": [{"matcher": "startup", "hooks": [
    {"type": "command", "command": "bash \"$CLAUDE_PROJECT_DIR\"/.claude/hooks/setup.sh", "timeout": 600}]}]}}


@pytest.fixture(scope="module")
def internet():
    """api.anthropic.com, pypi.org, files.pythonhosted.org and registry.npmjs.org as far as the
    proxy can tell: TLS stand-ins in a namespace of our own, one /32 route each."""
    N.check_test_routes([ANTHROPIC_IP, REGISTRY_IP])  # nothing of the host's (its package mirror) under them
    work = Path(tempfile.mkdtemp(prefix="appliance-general-", dir="/var/tmp"))
    ns = N.Netns(f"aplvm-gen-{os.getpid()}")
    servers = []
    try:
        N.sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        N.sh("ip", "addr", "add", "198.51.100.5/30", "dev", UPLINK)
        N.sh("ip", "link", "set", UPLINK, "up")
        ns.ip("addr", "add", "198.51.100.6/30", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        for ip in (ANTHROPIC_IP, REGISTRY_IP):
            ns.ip("addr", "add", f"{ip}/32", "dev", "eth0")
            N.sh("ip", "route", "add", f"{ip}/32", "via", "198.51.100.6")
        ca, cert, key = N.make_test_pki(work / "pki", ["api.anthropic.com", *REGISTRY_NAMES],
                                        [ANTHROPIC_IP, REGISTRY_IP])
        anthropic = AnthropicStandIn(host=ANTHROPIC_IP, port=443, tls=(str(cert), str(key)))
        servers.append(anthropic)
        ns.run(anthropic.start)
        registries = PackageRegistries(REGISTRY_IP, (str(cert), str(key)))
        registries.add_wheel("tinycalc", "1.0", {"tinycalc/__init__.py": "def add(a, b):\n    return a + b\n"})
        registries.add_npm("tinyfmt", "1.0.0", {"index.js": "module.exports = (n) => `total: ${n}`;\n"})
        servers.append(registries)
        ns.run(registries.start)
        yield anthropic, registries, ca
    finally:
        for server in servers:
            server.stop()
        for ip in (ANTHROPIC_IP, REGISTRY_IP):
            N.sh("ip", "route", "del", f"{ip}/32", check=False)
        N.sh("ip", "link", "del", UPLINK, check=False)
        ns.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def world(internet, hv):
    anthropic, registries, ca = internet
    state = state_dir("general")
    creds = state / "credentials.toml"
    creds.write_text(f'["api.anthropic.com"]\nx-api-key = "{KEY}"\n')
    creds.chmod(0o600)
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/shop", {
        "CLAUDE.md": "# Shop\nRun the tests with `python -m pytest -q` before you finish.\n",
        ".claude/settings.json": json.dumps(SETTINGS, indent=2),
        ".claude/hooks/setup.sh": HOOK,
        "requirements.txt": "tinycalc==1.0\n",
        "package.json": json.dumps({"name": "shop", "version": "1.0.0", "private": True,
                                    "dependencies": {"tinyfmt": "1.0.0"}}),
        ".gitignore": "node_modules/\n__pycache__/\n",
        "shop.py": "from tinycalc import add\n\n\ndef total(a, b):\n    return add(a, b) + 1\n",
        "test_shop.py": "import subprocess\n\nfrom shop import total\n\n\ndef test_total():\n"
                        "    assert total(2, 3) == 5\n\n\ndef test_the_node_dependency_is_installed():\n"
                        "    out = subprocess.run(['node', '-e', 'console.log(require(\"tinyfmt\")(5))'],\n"
                        "                         capture_output=True, text=True, check=True).stdout\n"
                        "    assert out.strip() == 'total: 5'\n",
    })
    # the company's CA, which its own package mirrors use: installed by the environment's setup
    company_ca = ca.read_text()
    setup = (f"sudo tee /usr/local/share/ca-certificates/company.crt >/dev/null <<'PEM'\n{company_ca}PEM\n"
             "sudo update-ca-certificates >/dev/null\n")
    try:
        with appliance_world(hv, state, bridge="apltest6", subnet="10.221.0.0/24", tap_prefix="aplg",
                             egress_table="applgeneral", default_profile="general",
                             static_hosts=f"{ANTHROPIC_IP} api.anthropic.com; "
                                          + "; ".join(f"{REGISTRY_IP} {n}" for n in REGISTRY_NAMES),
                             credentials_file=creds, upstream_ca_file=ca, dns_upstream="127.0.0.1:9",
                             memory_mb=2048, guest_templates="off") as w:
            w.engine.start()
            user = User.create(username="newcomer")
            Repository.create(name="acme/shop", url=upstream.url("acme/shop"), credential_kind="token",
                              credential_secret=upstream.token)
            Environment.create(owner=user, name="default", is_default=True, setup_script=setup,
                               variables="CLAUDE_CODE_MAX_RETRIES=0\n")
            yield w.engine, user, upstream, anthropic, registries
    finally:
        upstream.close()
        remove(state)






def test_first_session_on_the_default_image_with_the_default_agent_and_a_startup_hook(world):
    engine, user, upstream, anthropic, registries = world
    target = f"{WORKDIR}/shop.py"
    anthropic.script(
        tool_use("Read", {"file_path": target}, text="Let me look."),
        tool_use("Edit", {"file_path": target, "old_string": "return add(a, b) + 1", "new_string": "return add(a, b)"}),
        tool_use("Bash", {"command": "python -m pytest -q -p no:cacheprovider 2>&1", "description": "run the tests"}),
        text("Fixed total(); the tests pass."),
    )
    # no agent, no profile named: the defaults are Claude Code on `general`
    s = engine.service.create(user, NewSession("acme/shop", "Fix total()"))
    assert s.agent == "claude-code"
    s = wait_idle(engine, s.id)
    assert s.status == Status.IDLE, [(e.kind, e.data) for e in Event.select().where(Event.session == s.id)][-15:]

    from appliance.models import Sandbox
    assert Sandbox.get_by_id(s.sandbox_id).profile == "general"
    # the hook fetched through the proxy from the stand-ins
    assert registries.requested("pypi.org", "/simple/tinycalc/"), registries.requests
    assert registries.requested("files.pythonhosted.org", "/packages/tinycalc-1.0")
    assert registries.requested("registry.npmjs.org", "/tinyfmt")
    # the agent ran the tests, which used what the hook installed, and the edit is on the branch
    results = events(s.id, "tool_result")
    assert any("2 passed" in (r.get("output") or "") for r in results), results
    assert "return add(a, b)\n" in upstream.read_file("acme/shop", s.work_branch, "shop.py")
    assert "+ 1" not in upstream.read_file("acme/shop", s.work_branch, "shop.py")
    # CLAUDE.md reached the model with the request
    assert any("Run the tests with" in json.dumps(r.body) for r in anthropic.agent_requests)
    pypi_requests = len(registries.requested("pypi.org"))

    # the guest expires; the next turn gets a fresh guest, where the startup hook must run again
    old = s.sandbox_id
    Session.update(updated_at=Session.updated_at - 10**6).where(Session.id == s.id).execute()
    assert s.id in engine.expire_idle()
    anthropic.script(tool_use("Bash", {"command": "python -m pytest -q -p no:cacheprovider 2>&1"}),
                     text("Still green in the new guest."))
    engine.service.message(user, s.id, "Run the tests again, please.")
    s2 = wait_idle(engine, s.id)
    assert s2.status == Status.IDLE and s2.sandbox_id not in (None, old), s2.error
    hooks = [c for c in events(s.id, "command") if c.get("hook") == "SessionStart"]
    assert hooks and hooks[-1]["exit_code"] == 0, hooks
    assert len(registries.requested("pypi.org")) > pypi_requests, "the hook installed again in the fresh guest"
    assert any("2 passed" in (r.get("output") or "") for r in events(s.id, "tool_result")[len(results):])
