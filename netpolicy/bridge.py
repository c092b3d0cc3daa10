"""The appliance bridge and the sandboxes' taps: the one wrapper around netlink (pyroute2).

A sandbox's tap is created here before its guest starts (libvirt attaches to it unmanaged), so the
appliance decides the name, the bridge and the policy a guest's traffic enters. Taps are bridge
ports in isolated mode: the bridge itself never forwards one sandbox's frames to another (nft polices
the rest above that). Each tap is bound to its guest's MAC: it learns nothing, and a static
forwarding entry sends the guest's frames to it (`bind_port`).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NUD_NOARP, NUD_STALE

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


def bind_port(name: str, bridge: str, mac: str) -> None:
    """Pin a port's guest MAC to it: no learning (a frame with another guest's MAC cannot move that
    MAC onto this port), no flooding of unknown unicast to it, and one static forwarding entry so
    the host's frames for `mac` go here and nowhere else. (nft drops frames from this port with
    any other source MAC; see ruleset.py.) Idempotent."""
    with IPRoute() as ipr:
        bridge_idx, idx = _index(ipr, bridge), _index(ipr, name)
        if bridge_idx is None or idx is None:
            raise NetworkError(f"cannot bind {name} on {bridge}: {'bridge' if bridge_idx is None else 'port'} missing")
        try:
            ipr.brport("set", index=idx, learning=0, unicast_flood=0)
            ipr.fdb("replace", ifindex=idx, lladdr=mac, master=bridge_idx, state=NUD_NOARP)
        except NetlinkError as e:
            raise NetworkError(f"cannot bind {mac} to {name} on {bridge}: {e}") from e


def port_flags(name: str) -> dict[str, int] | None:
    """A bridge port's learning, unicast flood and isolation flags, from netlink (not /sys: that
    is the mount's network namespace, not necessarily the caller's). None: not a bridge port."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        for link in ipr.link("dump", family=socket.AF_BRIDGE) if idx is not None else ():
            if link["index"] == idx and link.get_attr("IFLA_PROTINFO") is not None:
                info = link.get_attr("IFLA_PROTINFO")
                return {key: info.get_attr(f"IFLA_BRPORT_{key.upper()}") for key in ("learning", "unicast_flood", "isolated")}
    return None


def static_macs(name: str) -> list[str]:
    """The static forwarding entries of a bridge port."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return []
        return sorted(m.get_attr("NDA_LLADDR") for m in ipr.fdb("dump", ifindex=idx) if m["state"] & NUD_NOARP)


def create_tap(name: str, bridge: str, mac: str) -> None:
    """A persistent tap, enslaved to the bridge as an isolated port bound to its guest's MAC, up."""
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
        except NetlinkError as e:
            ipr.link("del", ifname=name)
            raise NetworkError(f"cannot attach tap {name} to {bridge}: {e}") from e
    try:
        bind_port(name, bridge, mac)
        with IPRoute() as ipr:
            ipr.link("set", index=_index(ipr, name), state="up")
    except (NetworkError, NetlinkError) as e:
        delete_link(name)
        raise NetworkError(f"cannot attach tap {name} to {bridge}: {e}") from e


def set_neighbor(bridge: str, address: str, mac: str) -> None:
    """The host's neighbour entry for a guest's address: its MAC, now. A reused address otherwise
    keeps the previous guest's MAC, and the host's packets to the new guest go nowhere until that
    entry fails its probes (about 50 s) — a cloned guest sends nothing that would correct it."""
    with IPRoute() as ipr:
        idx = _index(ipr, bridge)
        if idx is not None:
            # stale: used at once, and confirmed by the kernel's own probe
            ipr.neigh("replace", dst=address, lladdr=mac, ifindex=idx, state=NUD_STALE)


def forget_neighbor(bridge: str, address: str) -> None:
    with IPRoute() as ipr:
        idx = _index(ipr, bridge)
        if idx is None:
            return
        try:
            ipr.neigh("del", dst=address, ifindex=idx)
        except NetlinkError as e:
            if e.code != errno.ENOENT:
                raise


def create_lone_tap(name: str) -> None:
    """A persistent tap on no bridge, up: a template guest's NIC, which reaches nothing."""
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            ipr.link("set", index=_index(ipr, name), state="up")
        except NetlinkError as e:
            raise NetworkError(f"cannot create tap {name}: {e}") from e


def links_with_prefix(prefix: str) -> list[str]:
    with IPRoute() as ipr:
        names = (link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
        return sorted(n for n in names if n and n.startswith(prefix))


def is_isolated_port(name: str) -> bool:
    flags = port_flags(name)
    return bool(flags and flags["isolated"])
