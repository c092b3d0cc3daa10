"""The facade's bookkeeping, with nft recorded instead of run (the real thing: tests/integration)."""

import argparse

import pytest
from conftest import make_config

from netpolicy import audit, ca
from netpolicy.allowlist import Policy, PolicyError
from netpolicy.nft import Nft
from netpolicy.service import EgressPolicy


class RecordingNft(Nft):
    def __init__(self):
        super().__init__()
        self.scripts = []
        self.tables_exist = False  # what the host's nft would say; never asked for real here

    def apply(self, script):
        self.scripts.append(script)

    def table_exists(self, family, name):
        return self.tables_exist


@pytest.fixture
def svc(tmp_path):
    cfg = make_config(tmp_path / "state", egress_methods_limited="GET,HEAD", egress_service_ports="8081")
    return EgressPolicy(cfg, nft=RecordingNft())


def test_attach_detach_are_one_transaction_each(svc):
    svc.attach("sb-1", "10.213.0.10", "aplt1", Policy.make("full"), session_id="s-1", mac="02:5E:00:00:00:01")
    assert len(svc.nft.scripts) == 1
    script = svc.nft.scripts[0]
    assert "add element inet appliance sandboxes { 10.213.0.10 }" in script
    assert "add element inet appliance full_egress { 10.213.0.10 }" in script
    assert 'add element bridge appliance bindings { "aplt1" . 02:5e:00:00:00:01 . 10.213.0.10 }' in script
    assert svc.table.lookup("10.213.0.10").session_id == "s-1"
    # Re-attach with another level: the old elements go in the same transaction.
    svc.attach("sb-1", "10.213.0.10", "aplt1", Policy.make("none"), mac="02:5e:00:00:00:01")
    assert "delete element inet appliance full_egress { 10.213.0.10 }" in svc.nft.scripts[1]
    assert "add element inet appliance full_egress" not in svc.nft.scripts[1].split("delete element")[-1]
    svc.detach("sb-1")
    assert "delete element bridge appliance bindings" in svc.nft.scripts[2]
    assert svc.table.lookup("10.213.0.10") is None
    svc.detach("sb-1")
    assert len(svc.nft.scripts) == 3  # nothing to do for an unknown id


def test_level_methods_from_config(svc):
    svc.attach("sb-1", "10.213.0.10", "aplt1", Policy.make("limited"))
    svc.attach("sb-2", "10.213.0.11", "aplt2", Policy.make("custom", ["a.example"]))
    assert svc.table.get("sb-1").policy.methods == ("GET", "HEAD")
    assert svc.table.get("sb-2").policy.methods is None


def test_reconcile_is_a_full_rebuild(svc):
    svc.attach("sb-old", "10.213.0.20", "aplt9", Policy.make())
    svc.reconcile([("sb-1", "10.213.0.10", "aplt1", Policy.make("full"), "s-1")])
    script = svc.nft.scripts[-1]
    assert script.count("delete table") == 2 and "10.213.0.20" not in script
    assert [e.sandbox_id for e in svc.entries()] == ["sb-1"]


def test_reconcile_outside_the_daemon_leaves_the_gate_alone(svc):
    # An admin command reconciling while the daemon (another process) runs the proxy: closing the
    # gate from here would cut every sandbox's egress until the proxy restarted.
    svc.attach("sb-old", "10.213.0.20", "aplt9", Policy.make())
    svc.nft.tables_exist = True
    svc.reconcile([("sb-1", "10.213.0.10", "aplt1", Policy.make(), "s-1")])
    script = svc.nft.scripts[-1]
    assert "delete table" not in script and "egress_gate" not in script
    assert "delete element inet appliance sandboxes { 10.213.0.20 }" in script
    assert "add element inet appliance sandboxes { 10.213.0.10 }" in script.split("delete element")[-1]
    assert [e.sandbox_id for e in svc.entries()] == ["sb-1"]


def test_prepare_for_guests_builds_missing_tables_closed(svc):
    svc.prepare_for_guests()
    assert "delete table" in svc.nft.scripts[-1]
    assert (svc.confdir / "mitmproxy-ca-cert.pem").exists()
    svc.nft.tables_exist = True
    svc.prepare_for_guests()
    assert len(svc.nft.scripts) == 1, "existing tables are left as the daemon made them"


@pytest.mark.parametrize(
    "address, tap",
    [("10.213.1.10", "aplt1"), ("10.213.0.1", "aplt1"), ("10.213.0.255", "aplt1"), ("x", "aplt1"), ("10.213.0.10", "tap1")],
)
def test_attach_validation(svc, address, tap):
    with pytest.raises(PolicyError):
        svc.attach("sb-1", address, tap, Policy.make())
    assert svc.nft.scripts == []


def test_guest_settings(svc):
    ca.ensure_ca(svc.confdir)
    g = svc.guest_settings("10.213.0.10")
    assert g["proxy"] == {
        "http": "http://10.213.0.1:3128",
        "https": "http://10.213.0.1:3128",
        "no_proxy": "localhost,127.0.0.1,::1,10.213.0.1",
    }
    assert g["dns"] == ["10.213.0.1"]
    assert g["ca_certs"][0].startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE" not in g["ca_certs"][0]
    with pytest.raises(PolicyError):
        svc.guest_settings("192.0.2.1")


def test_ca_is_created_once_and_private(svc):
    path = ca.ensure_ca(svc.confdir)
    first = path.read_text()
    assert ca.ensure_ca(svc.confdir).read_text() == first
    assert oct(ca.key_path(svc.confdir).stat().st_mode & 0o777) == "0o600"
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    assert "Appliance egress CA" in cert.subject.rfc4514_string()
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_proxy_command_line(svc):
    argv = svc._proxy_argv()
    joined = " ".join(argv)
    assert "--mode regular@10.213.0.1:3128" in joined and "--mode transparent@10.213.0.1:3129" in joined
    assert "connection_strategy=lazy" in joined and "flow_detail=0" in joined
    assert argv[argv.index("-s") + 1].endswith("netpolicy/proxy_addon.py")
    assert f"egress_policy_file={svc.policy_file}" in argv


def test_ports_must_differ(tmp_path):
    with pytest.raises(PolicyError):
        EgressPolicy(make_config(tmp_path, proxy_port=53))
    with pytest.raises(PolicyError):
        EgressPolicy(make_config(tmp_path, egress_service_ports="3129"))


def test_cli_egress_log(db, capsys):
    from appliance.cli import egress_cmd

    for verdict, path in (("allow", "/simple/"), ("deny", "/evil")):
        audit.record(sandbox_id="sb-1", session_id="s-1", client="10.213.0.10", source="proxy", host="pypi.org",
                     port=80, method="GET", path=path, verdict=verdict, reason="why", policy="limited", bytes=12)  # fmt: skip
    parser = argparse.ArgumentParser()
    egress_cmd.register(parser.add_subparsers(dest="command"))

    class Ctx:
        db = None  # the database is already open here

    args = parser.parse_args(["egress", "log", "s-1"])
    assert args.handler(args, Ctx()) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "allow" in out[0] and "pypi.org:80  GET /simple/ 12B  [limited] why" in out[0]
    args = parser.parse_args(["egress", "log", "sb-1", "--json", "--limit", "1"])
    args.handler(args, Ctx())
    import json

    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in rows] == ["/evil"]
    args = parser.parse_args(["egress", "log", "nobody"])
    args.handler(args, Ctx())
    assert "no egress events for nobody" in capsys.readouterr().out
