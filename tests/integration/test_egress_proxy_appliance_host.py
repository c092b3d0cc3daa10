"""A worker host's egress proxy names its host in the audit rows: the real mitmdump with the
appliance's addon, on loopback (no root: a "guest" at 127.0.0.1 with a policy of level none), given
the options a worker's EgressPolicy gives it; its deny row lands in the real database with
`appliance_host` set, and the destination stays in `host`."""

from __future__ import annotations

import dataclasses
import time
import urllib.error
import urllib.request

import pytest

from netpolicy import audit
from netpolicy.allowlist import Policy
from netpolicy.policy import PolicyTable, SandboxPolicy
from netpolicy.proxy_process import ProxyProcess, mitmdump_argv
from netpolicy.service import EgressPolicy

from postgres import free_port


@pytest.fixture
def worker_proxy(db, cfg, tmp_path):
    table = PolicyTable(tmp_path / "policy.json")
    table.put(SandboxPolicy("sb-h16b", "127.0.0.1", "aplh16b0", Policy.make("none"), "s-h16b"))
    worker_cfg = dataclasses.replace(cfg, cluster_mode="on", host_id="h16b-w9")
    # the worker's own option, as EgressPolicy hands it to mitmdump
    [host_option] = [a for a in EgressPolicy(worker_cfg)._proxy_argv() if a.startswith("egress_audit_host=")]
    port, transparent = free_port(), free_port()
    argv = mitmdump_argv("127.0.0.1", port, transparent, tmp_path / "confdir", {
        "egress_policy_file": tmp_path / "policy.json", "egress_audit_database": cfg.database_url,
        "egress_audit_host": host_option.split("=", 1)[1]})
    proxy = ProxyProcess(argv, [("127.0.0.1", port)], log_path=tmp_path / "proxy.log")
    proxy.start()
    yield port
    proxy.stop()


def test_the_proxy_of_a_worker_host_names_it_in_its_audit_rows(worker_proxy):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{worker_proxy}"}))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open("http://evil.example/h16b-exfil", timeout=10)
    assert e.value.code == 403
    deadline = time.monotonic() + 20
    rows = []
    while time.monotonic() < deadline and not rows:  # the addon's writer batches in the background
        rows = [r for r in audit.query("s-h16b") if r.path == "/h16b-exfil"]
        time.sleep(0.2)
    assert rows, "no audit row"
    assert rows[0].verdict == "deny" and rows[0].host == "evil.example" and rows[0].appliance_host == "h16b-w9"
