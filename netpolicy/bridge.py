"""The appliance bridge and the sandboxes' taps: the one wrapper around netlink (pyroute2).

A sandbox's tap is created here before its guest starts (libvirt attaches to it unmanaged), so the
appliance decides the name, the bridge and the policy a guest's traffic enters. Taps are bridge
ports in isolated mode: the bridge itself never forwards one sandbox's frames to another (nft polices
the rest above that).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from appliance_base.errors import ApplianceError


class NetworkError(ApplianceError):
    pass


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def bridge_mac(name: str) -> str:
    """A fixed, locally administered MAC for the bridge. Without one, Linux gives a bridge the lowest
    MAC among its ports, so it changes as taps come and go and guests' ARP entries go stale."""
    digest = hashlib.sha256(name.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def ensure_bridge(name: str, address: ipaddress.IPv4Interface) -> None:
    """Create the bridge if needed, give it exactly our address and MAC, bring it up. Idempotent."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", address=bridge_mac(name))
            except NetlinkError as e:
                raise NetworkError(f"cannot create bridge {name}: {e}", hint="run the appliance as root") from e
            idx = _index(ipr, name)
        else:
            kind = ipr.get_links(idx)[0].get_attr("IFLA_LINKINFO")
            if kind is None or kind.get_attr("IFLA_INFO_KIND") != "bridge":
                raise NetworkError(f"{name} exists and is not a bridge", hint="choose another 'bridge' name in the config")
        if ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS") != bridge_mac(name):
            ipr.link("set", index=idx, address=bridge_mac(name))
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        if (str(address.ip), address.network.prefixlen) not in have:
            ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=idx, state="up")


def delete_link(name: str) -> bool:
    """Remove a link; False if it was not there."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return False
            raise NetworkError(f"cannot delete {name}: {e}") from e
        return True


def create_tap(name: str, bridge: str) -> None:
    """A persistent tap, enslaved to the bridge as an isolated port, up."""
    with IPRoute() as ipr:
        bridge_idx = _index(ipr, bridge)
        if bridge_idx is None:
            raise NetworkError(f"bridge {bridge} does not exist", hint="start the appliance daemon, or run 'appliance doctor'")
        try:
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
        except NetlinkError as e:
            raise NetworkError(f"cannot create tap {name}: {e}") from e
        try:
            idx = _index(ipr, name)
            ipr.link("set", index=idx, master=bridge_idx)
            ipr.brport("set", index=idx, isolated=1)
            ipr.link("set", index=idx, state="up")
        except NetlinkError as e:
            ipr.link("del", ifname=name)
            raise NetworkError(f"cannot attach tap {name} to {bridge}: {e}") from e


def links_with_prefix(prefix: str) -> list[str]:
    with IPRoute() as ipr:
        names = (link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
        return sorted(n for n in names if n and n.startswith(prefix))


def is_isolated_port(name: str) -> bool:
    try:
        with open(f"/sys/class/net/{name}/brport/isolated") as f:
            return f.read().strip() == "1"
    except FileNotFoundError:
        return False
