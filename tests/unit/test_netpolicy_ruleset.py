"""The nft script generator against golden files (tests/unit/golden/netpolicy_*.nft).

After an intended change, regenerate with UPDATE_GOLDEN=1 and review the diff.
"""

import dataclasses
import os
from pathlib import Path

import pytest

from netpolicy import ruleset as R

GOLDEN = Path(__file__).parent / "golden"


def _rs(**kw) -> R.Ruleset:
    base = dict(
        table="appliance",
        bridge="appl0",
        tap_prefix="aplt",
        subnet="10.213.0.0/24",
        services=R.Services("10.213.0.1", git_proxy_port=3130, extra_tcp_ports=(8081,)),
        members=(
            R.Member("sb-b", "10.213.0.11", "aplt0b", full=True, mac="02:5e:11:22:33:0b"),
            R.Member("sb-a", "10.213.0.10", "aplt0a", mac="02:5e:11:22:33:0a"),
        ),
    )
    base.update(kw)
    return R.Ruleset(**base)


def _check(name: str, text: str) -> None:
    path = GOLDEN / f"netpolicy_{name}.nft"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; UPDATE_GOLDEN=1 regenerates it"


@pytest.mark.parametrize(
    "name, rs",
    [
        ("full_proxy_down", _rs()),
        ("full_proxy_up_bandwidth", _rs(proxy_up=True, bandwidth_kbytes=2048)),
        ("empty", _rs(members=())),
    ],
)
def test_render(name, rs):
    _check(name, R.render(rs))


def test_render_change():
    rs = _rs()
    text = R.render_change(rs, remove=[rs.members[0]], add=[R.Member("sb-c", "10.213.0.12", "aplt0c", mac="02:5e:11:22:33:0c")])
    _check("change", text)
    assert R.render_change(rs) == ""


def test_render_gate_and_delete():
    _check("gate_down", R.render_gate(_rs()))
    _check("gate_up", R.render_gate(_rs(proxy_up=True)))
    _check("delete", R.render_delete(_rs()))


def test_member_order_does_not_matter():
    rs = _rs()
    assert R.render(rs) == R.render(dataclasses.replace(rs, members=tuple(reversed(rs.members))))


def test_blocked_networks_include_the_subnet_and_are_merged():
    nets = R.blocked_networks(_rs(subnet="203.0.113.0/24", blocked=("10.0.0.0/8", "10.1.0.0/16", "169.254.0.0/16")))
    assert nets == ["10.0.0.0/8", "169.254.0.0/16", "203.0.113.0/24"]
    assert "169.254.0.0/16" in R.blocked_networks(_rs())  # metadata address


def test_service_ports():
    s = R.Services("10.0.0.1", dns_port=53, proxy_port=3128, git_proxy_port=0, extra_tcp_ports=(9000, 3128))
    assert s.tcp_ports == (53, 3128, 9000)
