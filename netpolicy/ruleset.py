"""The appliance's nftables ruleset, generated from a description. Pure: text in, text out.

The appliance owns exactly two tables, both named `Ruleset.table`: one in the `inet` family (what
a sandbox may reach at layer 3 and where its web traffic goes) and one in the `bridge` family
(which bridge port may use which source address, and no port-to-port traffic). It never lists,
flushes or edits any other table.

What the rules say, for traffic from the bridge:

* bridge: a frame from a sandbox tap (name starts with `tap_prefix`) must carry the source MAC and
  the IPv4 (or ARP sender) address bound to that tap, else it is dropped (no spoofing another
  sandbox's address to borrow its policy, nor its MAC to take its traffic: the drop comes before
  the bridge learns anything); everything else from a tap (IPv6, VLAN tags, other ethertypes) is dropped;
  nothing is bridged from one port to another (no sandbox-to-sandbox traffic).
* inet prerouting: TCP 80/443 from a sandbox to anywhere but the host's own addresses is
  redirected to the transparent proxy port, so tools that ignore proxy variables are policed too.
* inet input: a sandbox reaches the bridge address only on the appliance's service ports
  (resolver, explicit proxy, git proxy, extra service ports; the transparent port only as the
  target of that redirect). Every other host port and address is refused.
* inet forward: only sandboxes at level `full` are forwarded (masqueraded), never to private,
  loopback, link-local, metadata (also cloud fabric endpoints outside those ranges), multicast or
  reserved networks, never to the host's own addresses, never back into the bridge, and
  only while the proxy is up (the `egress_gate` chain drops everything while it is down).
* IPv6 from the bridge is dropped.

Per-sandbox state lives in sets (`sandboxes`, `full_egress`, `bindings`), so attaching or
detaching a sandbox is a handful of element changes in one `nft -f` transaction, and a full
rebuild (`render`) replaces both tables atomically.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable

# Never reachable from a sandbox, whatever its level (IPv4; IPv6 is dropped as a whole).
BUILTIN_BLOCKED: tuple[str, ...] = (
    "0.0.0.0/8",  # "this" network
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # carrier-grade NAT
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, including the metadata address 169.254.169.254
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, broadcast
)
# Cloud fabric endpoints outside those ranges (169.254.0.0/16 holds the AWS/GCP/Azure/OpenStack
# metadata address, 100.64.0.0/10 Alibaba's 100.100.100.200): Azure's wire server (its DNS, DHCP,
# health probes and VM agent channel). IPv6 ones (AWS fd00:ec2::254) need no entry: sandboxes
# have no IPv6 at all.
PLATFORM_ENDPOINTS: tuple[str, ...] = ("168.63.129.16/32",)
BUILTIN_BLOCKED += PLATFORM_ENDPOINTS

REDIRECTED_PORTS = (80, 443)


@dataclasses.dataclass(frozen=True)
class Services:
    """The appliance's own ports on the bridge address."""

    address: str
    dns_port: int = 53
    proxy_port: int = 3128
    transparent_port: int = 3129
    git_proxy_port: int = 0  # 0: none
    extra_tcp_ports: tuple[int, ...] = ()

    @property
    def tcp_ports(self) -> tuple[int, ...]:
        ports = [self.dns_port, self.proxy_port, self.git_proxy_port, *self.extra_tcp_ports]
        return tuple(sorted({p for p in ports if p}))


@dataclasses.dataclass(frozen=True)
class Member:
    """One sandbox's nft state."""

    sandbox_id: str
    address: str
    tap: str
    full: bool = False
    mac: str | None = None  # the guest's MAC: its frames must carry it (None: its frames are dropped)


@dataclasses.dataclass(frozen=True)
class Ruleset:
    table: str
    bridge: str
    tap_prefix: str
    subnet: str
    services: Services
    blocked: tuple[str, ...] = BUILTIN_BLOCKED
    bandwidth_kbytes: int = 0  # per sandbox and direction, KiB/s; 0: unlimited
    members: tuple[Member, ...] = ()
    proxy_up: bool = False
    # The host's own IPv4 addresses (all interfaces; see hostaddrs.py): never a redirect or
    # forward target. Kept current by EgressPolicy (render_host_addresses).
    host_addresses: tuple[str, ...] = ()

    def with_members(self, members: Iterable[Member]) -> Ruleset:
        return dataclasses.replace(self, members=tuple(members))


def blocked_networks(rs: Ruleset) -> list[str]:
    """The blocked list plus the appliance subnet, merged (nft interval sets refuse overlaps)."""
    nets = [ipaddress.IPv4Network(n, strict=False) for n in (*rs.blocked, rs.subnet)]
    return [str(n) for n in ipaddress.collapse_addresses(nets)]


def _q(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def _elements(items: list[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _binding(m: Member) -> str | None:
    return f"{_q(m.tap)} . {m.mac.lower()} . {m.address}" if m.mac else None


def _gate_rules(rs: Ruleset) -> list[str]:
    return [] if rs.proxy_up else ['counter drop comment "egress proxy is down: fail closed"']


def _host_v4(rs: Ruleset) -> list[str]:
    return sorted({a for a in rs.host_addresses if ipaddress.ip_address(a).version == 4}, key=ipaddress.IPv4Address)


def _ordered(members: Iterable[Member]) -> list[Member]:
    return sorted(members, key=lambda m: (ipaddress.IPv4Address(m.address), m.sandbox_id))


def _inet_table(rs: Ruleset) -> list[str]:
    s = rs.services
    br = _q(rs.bridge)
    members = _ordered(rs.members)
    full = [m.address for m in members if m.full]
    out = [f"table inet {rs.table} {{"]
    out += ["\tset sandboxes {", "\t\ttype ipv4_addr"]
    if members:
        out.append(f"\t\telements = {_elements([m.address for m in members])}")
    out += ["\t}", "\tset full_egress {", "\t\ttype ipv4_addr"]
    if full:
        out.append(f"\t\telements = {_elements(full)}")
    out += ["\t}", "\tset host_addrs {", "\t\ttype ipv4_addr"]
    if rs.host_addresses:
        out.append(f"\t\telements = {_elements(_host_v4(rs))}")
    out += ["\t}", "\tset blocked_nets {", "\t\ttype ipv4_addr", "\t\tflags interval"]
    out.append(f"\t\telements = {_elements(blocked_networks(rs))}")
    out += ["\t}"]
    redirected = ", ".join(str(p) for p in REDIRECTED_PORTS)
    tcp_ports = ", ".join(str(p) for p in s.tcp_ports)
    out += [
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        f"\t\tiifname {br} ip saddr @sandboxes ip daddr @host_addrs accept",
        f"\t\tiifname {br} ip saddr @sandboxes ip daddr != {s.address} tcp dport {{ {redirected} }}"
        f" redirect to :{s.transparent_port}",
        "\t}",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\tiifname {br} jump sandbox_in",
        "\t}",
        "\tchain sandbox_in {",
        "\t\tmeta nfproto != ipv4 counter drop",
        "\t\tip saddr != @sandboxes counter drop",
        "\t\tct state established,related accept",
        f"\t\tip daddr != {s.address} jump refuse",
        f"\t\tudp dport {s.dns_port} accept",
        f"\t\ttcp dport {{ {tcp_ports} }} accept",
        f"\t\ttcp dport {s.transparent_port} ct status dnat accept",
        "\t\tjump refuse",
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f"\t\tiifname {br} jump sandbox_out",
        f"\t\toifname {br} jump sandbox_back",
        "\t}",
        "\tchain sandbox_out {",
        "\t\tmeta nfproto != ipv4 counter drop",
        f"\t\toifname {br} jump refuse",
        "\t\tip saddr != @full_egress jump refuse",
        "\t\tip daddr @host_addrs jump refuse",
        "\t\tjump egress_gate",
        "\t\tip daddr @blocked_nets jump refuse",
        "\t\taccept",
        "\t}",
        "\tchain sandbox_back {",
        "\t\tct state established,related accept",
        "\t\tcounter drop",
        "\t}",
        "\tchain egress_gate {",
        *[f"\t\t{r}" for r in _gate_rules(rs)],
        "\t}",
        "\tchain refuse {",
        "\t\tcounter",
        "\t\tmeta l4proto tcp reject with tcp reset",
        "\t\treject with icmpx admin-prohibited",
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        f"\t\toifname != {br} ip saddr @full_egress masquerade",
        "\t}",
        "}",
    ]
    return out


def _limit(kbytes: int) -> str:
    return f"limit rate over {kbytes} kbytes/second burst {kbytes} kbytes"


def _bridge_table(rs: Ruleset) -> list[str]:
    ports = _q(rs.tap_prefix + "*")
    members = _ordered(rs.members)
    out = [f"table bridge {rs.table} {{", "\tset bindings {", "\t\ttype ifname . ether_addr . ipv4_addr"]
    bindings = [b for b in map(_binding, members) if b]
    if bindings:
        out.append(f"\t\telements = {_elements(bindings)}")
    out += [
        "\t}",
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority filter; policy accept;",
        f"\t\tiifname != {ports} accept",
        # Frame source, ARP sender MAC and sender address: all three the port's own. Dropped here,
        # before the bridge could learn the source MAC on this port.
        ("\t\tether type arp iifname . ether saddr . arp saddr ip @bindings"
         " iifname . arp saddr ether . arp saddr ip @bindings accept"),
        "\t\tether type ip iifname . ether saddr . ip saddr @bindings jump from_sandbox",
        "\t\tcounter drop",
        "\t}",
        "\tchain from_sandbox {",
    ]
    if rs.bandwidth_kbytes:
        out.append(f"\t\tmeter bw_up size 65535 {{ ip saddr timeout 60s {_limit(rs.bandwidth_kbytes)} }} counter drop")
    out += [
        "\t\taccept",
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f"\t\tiifname {ports} counter drop",
        f"\t\toifname {ports} counter drop",
        "\t}",
    ]
    if rs.bandwidth_kbytes:
        out += [
            "\tchain postrouting {",
            "\t\ttype filter hook postrouting priority filter; policy accept;",
            f"\t\toifname {ports} ether type ip meter bw_down size 65535 {{ ip daddr timeout 60s "
            f"{_limit(rs.bandwidth_kbytes)} }} counter drop",
            "\t}",
        ]
    out.append("}")
    return out


def _header(rs: Ruleset) -> list[str]:
    return [f"# appliance egress ruleset for bridge {rs.bridge} ({rs.subnet}); generated, do not edit"]


def render(rs: Ruleset) -> str:
    """A script that replaces both appliance tables atomically with the described state.

    `table X {}` creates the table if missing so that the following `delete` cannot fail; the
    whole script is one transaction, so there is no moment without rules.
    """
    out = _header(rs)
    for family in ("inet", "bridge"):
        out += [f"table {family} {rs.table} {{}}", f"delete table {family} {rs.table}"]
    out += _inet_table(rs)
    out += _bridge_table(rs)
    return "\n".join(out) + "\n"


def render_delete(rs: Ruleset) -> str:
    """Remove both appliance tables (succeeds when they do not exist)."""
    out = []
    for family in ("inet", "bridge"):
        out += [f"table {family} {rs.table} {{}}", f"delete table {family} {rs.table}"]
    return "\n".join(out) + "\n"


def _member_elements(rs: Ruleset, m: Member) -> list[tuple[str, str, str]]:
    elems = [("inet", "sandboxes", m.address)]
    if m.mac:
        elems.append(("bridge", "bindings", _binding(m)))
    if m.full:
        elems.append(("inet", "full_egress", m.address))
    return elems


def render_change(rs: Ruleset, *, remove: Iterable[Member] = (), add: Iterable[Member] = ()) -> str:
    """Element changes for sandboxes leaving and joining, as one transaction.

    Removal is idempotent: each element is added before it is deleted, so deleting one that is
    already gone is not an error.
    """
    out = []
    for m in remove:
        for family, set_name, elem in _member_elements(rs, m):
            out.append(f"add element {family} {rs.table} {set_name} {{ {elem} }}")
            out.append(f"delete element {family} {rs.table} {set_name} {{ {elem} }}")
    for m in add:
        for family, set_name, elem in _member_elements(rs, m):
            out.append(f"add element {family} {rs.table} {set_name} {{ {elem} }}")
    return "\n".join(out) + "\n" if out else ""


def render_host_addresses(rs: Ruleset) -> str:
    """Replace the host's own addresses (one transaction)."""
    out = [f"flush set inet {rs.table} host_addrs"]
    if _host_v4(rs):
        out.append(f"add element inet {rs.table} host_addrs {_elements(_host_v4(rs))}")
    return "\n".join(out) + "\n"


def render_gate(rs: Ruleset) -> str:
    """Open (proxy up) or close (proxy down) the forward path for every sandbox."""
    out = [f"flush chain inet {rs.table} egress_gate"]
    out += [f"add rule inet {rs.table} egress_gate {r}" for r in _gate_rules(rs)]
    return "\n".join(out) + "\n"
