"""The nft side alone, against the real kernel, in a namespace of its own: the generated scripts
load, changes are atomic and exact, and nobody else's table is ever touched."""

from __future__ import annotations

import os
import uuid

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and nftables"),
]

from netpolicy import ruleset as R  # noqa: E402
from netpolicy.nft import Nft, NftError  # noqa: E402

import netns as N  # noqa: E402

FOREIGN = """
table inet someone_else {
    set friends { type ipv4_addr; elements = { 192.0.2.7 } }
    chain input {
        type filter hook input priority 10; policy accept;
        ip saddr @friends counter accept
    }
}
table bridge someone_else {
    chain forward {
        type filter hook forward priority 10; policy accept;
        counter
    }
}
"""


@pytest.fixture
def ns():
    n = N.Netns(f"{N.PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:6]}-nft")
    try:
        yield n
    finally:
        n.close()


def _rs(table: str, members=(), **kw) -> R.Ruleset:
    return R.Ruleset(
        table=table,
        bridge="egbtest",
        tap_prefix="egtst",
        subnet="10.250.7.0/24",
        services=R.Services("10.250.7.1", git_proxy_port=3130),
        members=tuple(members),
        **kw,
    )


def _member(i: int, full: bool = False) -> R.Member:
    return R.Member(f"sb-{i}", f"10.250.7.{10 + i}", f"egtst{i}", full, mac=f"02:5e:00:00:00:{i:02x}")


def test_scripts_load_and_others_tables_are_untouched(ns):
    nft = Nft()
    ns.run(nft.apply, FOREIGN)
    before = ns.run(nft.list_text, "inet", "someone_else") + ns.run(nft.list_text, "bridge", "someone_else")
    rs = _rs("appl_t1", [_member(1), _member(2, full=True)], bandwidth_kbytes=512)
    ns.run(nft.apply, R.render(rs))
    ns.run(nft.apply, R.render(rs))  # idempotent
    ns.run(nft.apply, R.render_change(rs, remove=[_member(1)], add=[_member(3)]))
    ns.run(nft.apply, R.render_gate(R.Ruleset(**{**rs.__dict__, "proxy_up": True})))
    ns.run(nft.apply, R.render_delete(rs))
    ns.run(nft.apply, R.render_delete(rs))  # deleting what is gone is fine
    after = ns.run(nft.list_text, "inet", "someone_else") + ns.run(nft.list_text, "bridge", "someone_else")
    assert after == before
    assert ns.run(nft.tables) == [("inet", "someone_else"), ("bridge", "someone_else")]


def test_changes_are_exact_and_idempotent(ns):
    nft = Nft()
    rs = _rs("appl_t2", [_member(i, full=i % 2 == 0) for i in range(1, 6)])
    ns.run(nft.apply, R.render(rs))
    for _ in range(2):
        ns.run(nft.apply, R.render_change(rs, remove=[_member(2, full=True)], add=[_member(7, full=True)]))
    assert sorted(ns.run(nft.set_elements, "inet", "appl_t2", "full_egress")) == ["10.250.7.14", "10.250.7.17"]
    assert "10.250.7.12" not in ns.run(nft.set_elements, "inet", "appl_t2", "sandboxes")
    bindings = ns.run(nft.set_elements, "bridge", "appl_t2", "bindings")
    assert {"concat": ["egtst7", "02:5e:00:00:00:07", "10.250.7.17"]} in bindings and len(bindings) == 5


def test_a_failing_transaction_changes_nothing(ns):
    nft = Nft()
    rs = _rs("appl_t3", [_member(1)])
    ns.run(nft.apply, R.render(rs))
    before = ns.run(nft.list_text, "inet", "appl_t3")
    bad = R.render_change(rs, add=[_member(4)]) + "add element inet appl_t3 no_such_set { 10.250.7.99 }\n"
    with pytest.raises(NftError):
        ns.run(nft.apply, bad)
    assert ns.run(nft.list_text, "inet", "appl_t3") == before


def test_two_hundred_sandboxes(ns):
    nft = Nft()
    members = [R.Member(f"sb-{i}", f"10.250.{7 + i // 200}.{10 + i % 200}", f"egtst{i}", mac=f"02:5e:00:00:{i // 256:02x}:{i % 256:02x}")
               for i in range(200)]
    rs = R.Ruleset(
        table="appl_t4", bridge="egbtest", tap_prefix="egtst", subnet="10.250.0.0/16",
        services=R.Services("10.250.0.1"), members=tuple(members),
    )  # fmt: skip
    ns.run(nft.apply, R.render(rs))
    assert len(ns.run(nft.set_elements, "bridge", "appl_t4", "bindings")) == 200


def test_start_without_the_bridge_says_what_to_do(ns, tmp_path):
    from conftest import make_config

    from appliance.db import open_database
    from netpolicy.service import EgressError, EgressPolicy

    cfg = make_config(tmp_path / "state", bridge="egbnone", subnet="10.250.9.0/24", tap_prefix="egnon",
                      egress_table="appl_t5")  # fmt: skip
    open_database(cfg.database_url)
    svc = EgressPolicy(cfg)
    with pytest.raises(EgressError, match="must exist"):
        ns.run(svc.start)
    assert svc.proxy is None
    assert ("inet", "appl_t5") in ns.run(Nft().tables)  # isolation stays, gate closed
    ns.run(svc.remove_rules)
    assert ns.run(Nft().tables) == []


def test_a_tap_is_bound_to_its_guests_mac(ns):
    # Issue 11, hole 2: a tap learns nothing and has one static entry, its guest's MAC.
    import ipaddress

    from netpolicy import bridge

    ns.run(bridge.ensure_bridge, "egbtest", ipaddress.IPv4Interface("10.250.7.1/24"))
    ns.run(bridge.create_tap, "egtst1", "egbtest", "02:5e:aa:bb:cc:01")
    assert ns.run(bridge.port_flags, "egtst1") == {"learning": 0, "unicast_flood": 0, "isolated": 1}
    assert ns.run(bridge.static_macs, "egtst1") == ["02:5e:aa:bb:cc:01"]
