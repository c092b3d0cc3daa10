"""More than one host: every egress audit row names the appliance host whose proxy or resolver
decided it (NULL on a single server), through the real writer into the real database, through the
real proxy addon's options (as mitmdump gets them), and shown in the session's egress tab and
`appliance egress log` (which filters by it)."""

from __future__ import annotations

import dataclasses

from mitmproxy.test import taddons, tutils
from test_console_pages import build_world, make_session
from test_netpolicy_proxy_addon import Proxy, client, request_flow

from appliance.cli.main import main
from netpolicy import audit
from netpolicy import proxy_addon as P
from netpolicy.allowlist import Policy
from netpolicy.policy import PolicyTable, SandboxPolicy
from netpolicy.service import EgressPolicy

GUEST = "10.213.0.10"


def decide(writer, path):
    entry = SandboxPolicy("sb-1", GUEST, "aplt0", Policy.make("limited"), "s-1")
    writer.decision(entry, client=GUEST, source="dns", host="pypi.org", verdict="allow", reason="ok", path=path)


def test_the_writer_names_its_host_and_a_single_server_names_none(db, cfg):
    worker = audit.AuditWriter(cfg.database_url, appliance_host="h16b-w1").start()
    single = audit.AuditWriter(cfg.database_url).start()
    try:
        decide(worker, "/on-w1")
        decide(single, "/single")
        assert worker.flush() and single.flush()
    finally:
        worker.close()
        single.close()
    rows = {r.path: r for r in audit.query("s-1")}
    assert rows["/on-w1"].appliance_host == "h16b-w1" and rows["/single"].appliance_host is None
    assert rows["/on-w1"].host == "pypi.org", "the destination stays in `host`"
    assert [r.path for r in audit.query("s-1", appliance_host="h16b-w1")] == ["/on-w1"]
    assert rows["/on-w1"].as_dict()["appliance_host"] == "h16b-w1"


def test_the_proxy_addon_writes_its_hosts_name(db, cfg, tmp_path):
    table = PolicyTable(tmp_path / "policy.json")
    table.put(SandboxPolicy("sb-l", GUEST, "aplt0", Policy.make("limited"), "s-l"))
    addons = P.make_addons()
    with taddons.context(*addons) as tctx:
        tctx.configure(addons[0], egress_policy_file=str(tmp_path / "policy.json"),
                       egress_static_hosts="203.0.113.10 pypi.org", egress_audit_database=cfg.database_url,
                       egress_audit_host="h16b-w2")
        proxy = Proxy(tctx, addons)  # the addon's own recording, into the real writer
        f = request_flow(client(GUEST), "pypi.org", path="/simple/")
        proxy.hook("requestheaders", f)
        f.response = tutils.tresp(content=b"")
        proxy.hook("responseheaders", f)
        proxy.hook("response", f)
        assert proxy.state.audit.flush()
        proxy.hook("done")
    row = audit.query("s-l")[-1]
    assert row.verdict == "allow" and row.host == "pypi.org" and row.appliance_host == "h16b-w2"


def test_a_worker_host_hands_its_id_to_the_proxy_and_a_single_server_does_not(cfg):
    def option(config):
        argv = EgressPolicy(config)._proxy_argv()
        return next(a for a in argv if a.startswith("egress_audit_host="))

    assert option(cfg) == "egress_audit_host="
    clustered = dataclasses.replace(cfg, cluster_mode="on", host_id="h16b-w3")
    assert clustered.appliance_host == "h16b-w3" and cfg.appliance_host is None
    assert option(clustered) == "egress_audit_host=h16b-w3"


def test_the_egress_tab_and_the_cli_show_and_filter_the_deciding_host(db, cfg, capsys, monkeypatch):
    world = build_world(cfg)
    sid = make_session(world)
    audit.record(session_id=sid, client=GUEST, source="proxy", host="pypi.org", verdict="allow", reason="ok",
                 path="/a", appliance_host="h16b-w4")
    audit.record(session_id=sid, client=GUEST, source="proxy", host="files.pythonhosted.org", verdict="allow",
                 reason="ok", path="/b", appliance_host="h16b-w5")
    page = world["as_"]("alice").get(f"/sessions/{sid}/egress").get_data(as_text=True)
    assert "Decided on" in page and '<td class="appliance-host">h16b-w4</td>' in page

    monkeypatch.setattr("appliance.cli.main.Context.config", cfg)
    assert main(["egress", "log", sid, "--appliance-host", "h16b-w5"]) == 0
    out = capsys.readouterr().out
    assert "on h16b-w5" in out and "files.pythonhosted.org" in out and "pypi.org:" not in out and "/a" not in out


def test_a_single_servers_egress_tab_has_no_host_column(db, cfg):
    world = build_world(cfg)
    sid = make_session(world)
    audit.record(session_id=sid, client=GUEST, source="proxy", host="pypi.org", verdict="allow", reason="ok")
    assert "Decided on" not in world["as_"]("alice").get(f"/sessions/{sid}/egress").get_data(as_text=True)
