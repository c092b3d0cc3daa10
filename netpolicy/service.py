"""The egress facade the sandbox layer calls: `EgressPolicy(config)`.

    egress = EgressPolicy(config)
    egress.start()                       # nft tables, resolver threads, supervised mitmdump
    egress.attach("sb-1", "10.213.0.10", "aplt0a1b2", Policy.make("limited"), session_id="s-1")
    identity.update(egress.guest_settings("10.213.0.10"))   # "proxy", "dns", "ca_certs"
    ...
    egress.detach("sb-1")
    egress.reconcile(live)               # after a daemon restart: exact state for the live ones
    egress.stop()

State: the policy table (`<state_dir>/egress/policy.json`, read by the proxy child and the
resolver by source address) and the nft sets. `attach`/`detach` change both; each nft change is
one `nft -f` transaction. The resolver runs as two threads in this process; the proxy is a
supervised child process. While the proxy is down the nft egress gate is closed.

The bridge (with the bridge address) must exist before `start()`: both listeners bind to it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from appliance_base.db import connect_database, database
from appliance_base.errors import ApplianceError

from . import bridge, ca, ruleset
from .allowlist import FULL, LEVELS, Policy, PolicyError, parse_methods, parse_ports
from .audit import AuditWriter, prune
from .credentials import load_credentials
from .hostaddrs import HostAddresses, read_host_addresses
from .nft import Nft, NftError
from .policy import PolicyTable, SandboxPolicy
from .proxy_process import ProxyProcess, mitmdump_argv
from .resolver import DnsServer, FilteringResolver, StaticHosts, TcpLimits, Upstream, parse_upstreams

log = logging.getLogger(__name__)

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

class _ProcessAndThreadLock:
    """Serialises changes to the policy table and the nft sets across threads and processes (the
    daemon and admin commands both attach and detach sandboxes). Re-entrant within a thread."""

    def __init__(self, path: Path):
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self):
        self._thread_lock.acquire()
        if self._depth == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None
        self._thread_lock.release()


class EgressError(ApplianceError):
    """The egress layer could not start."""


# What the guest sends where the proxy injects a real credential (e.g. ANTHROPIC_API_KEY).
CREDENTIAL_PLACEHOLDER = "appliance-injected-by-proxy"


def _ports(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(p) for p in text.replace(",", " ").split())
    except ValueError as e:
        raise PolicyError(f"egress_service_ports: not a list of ports: {text!r}") from e
    if any(not 0 < p < 65536 for p in ports):
        raise PolicyError(f"egress_service_ports: port out of range in {text!r}")
    return ports


class EgressPolicy:
    def __init__(self, config, *, nft: Nft | None = None):
        self.config = config
        self.dir = Path(config.state_dir) / "egress"
        self.policy_file = self.dir / "policy.json"
        self.confdir = self.dir / "ca"
        self.proxy_log = self.dir / "proxy.log"
        self.table = PolicyTable(self.policy_file)
        self.nft = nft or Nft()
        self.address = str(config.bridge_address)
        self.network = ipaddress.IPv4Network(config.subnet)
        self.services = ruleset.Services(
            address=self.address,
            dns_port=config.dns_port,
            proxy_port=config.proxy_port,
            transparent_port=config.transparent_proxy_port,
            git_proxy_port=config.git_proxy_port,
            extra_tcp_ports=_ports(config.egress_service_ports),
        )
        self._check_ports()
        extra_blocked = tuple(config.egress_blocked_networks.replace(",", " ").split())
        self.base = ruleset.Ruleset(
            table=config.egress_table,
            bridge=config.bridge,
            tap_prefix=config.tap_prefix,
            subnet=config.subnet,
            services=self.services,
            blocked=ruleset.BUILTIN_BLOCKED + extra_blocked,
            bandwidth_kbytes=config.egress_bandwidth_kbytes,
        )
        self.level_methods = {
            level: parse_methods(getattr(config, f"egress_methods_{level}", "") or None) for level in LEVELS
        }
        # Allowed destination ports per level (limited, custom); full reaches every port.
        self.level_ports = {}
        for level in ("limited", "custom"):
            try:
                self.level_ports[level] = parse_ports(getattr(config, f"egress_ports_{level}"))
            except PolicyError as e:
                raise PolicyError(f"egress_ports_{level}: {e}", hint="write e.g. 80,443 (or 'any')") from e
        self._lock = _ProcessAndThreadLock(self.dir / ".lock")
        self._proxy: ProxyProcess | None = None
        self._dns: DnsServer | None = None
        self._audit: AuditWriter | None = None
        self._gate_up = False
        self._host_watch: threading.Thread | None = None
        self._host_stop = threading.Event()

    def _check_ports(self) -> None:
        s = self.services
        named = [s.dns_port, s.proxy_port, s.transparent_port, *([s.git_proxy_port] if s.git_proxy_port else [])]
        if len(set(named)) != len(named) or set(named) & set(s.extra_tcp_ports):
            raise PolicyError(
                "egress ports must all differ (dns_port, proxy_port, transparent_proxy_port, git_proxy_port, "
                "egress_service_ports)"
            )

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def proxy_up(self) -> bool:
        return bool(self._proxy and self._proxy.up)

    @property
    def proxy(self) -> ProxyProcess | None:
        return self._proxy

    def start(self) -> None:
        """Tables (rebuilt from the policy table: idempotent), resolver, proxy. Egress opens when the
        proxy listens. Calling it again while running does nothing."""
        if self._proxy is not None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        ca.ensure_ca(self.confdir)
        connect_database(self.config.database_url)  # the daemon has migrated it already
        with self._lock:
            self._gate_up = False
            self.nft.apply(ruleset.render(self._ruleset(self.table.entries())))
        self._audit = AuditWriter(
            self.config.database_url,
            retention_days=self.config.audit_retention_days,
            max_rows=self.config.audit_max_rows,
            appliance_host=self.config.appliance_host,
        ).start()
        try:
            with database.connection_context():
                prune(self.config.audit_retention_days, self.config.audit_max_rows)
            upstream = Upstream(parse_upstreams(self.config.dns_upstream), StaticHosts.load(self.config.static_hosts))
            limits = TcpLimits(max_connections=self.config.dns_tcp_max_connections,
                               max_per_client=self.config.dns_tcp_max_per_sandbox,
                               idle_timeout=self.config.dns_tcp_idle_timeout)
            self._dns = DnsServer(FilteringResolver(self.table, upstream, self._audit), self.address, self.config.dns_port,
                                  tcp_limits=limits)
            try:
                self._dns.start()
            except OSError as e:
                raise EgressError(
                    f"the resolver cannot listen on {self.address}:{self.config.dns_port}: {e.strerror}",
                    hint=f"the bridge {self.config.bridge} must exist with {self.address} before egress starts, "
                    "and nothing else may use that port",
                ) from e
            self._proxy = ProxyProcess(
                self._proxy_argv(),
                [(self.address, self.config.proxy_port), (self.address, self.config.transparent_proxy_port)],
                log_path=self.proxy_log,
                env=self._proxy_env(),
                on_up=lambda: self._set_gate(True),
                on_down=lambda: self._set_gate(False),
                restart_delay=self.config.proxy_restart_delay,
            )
            self._proxy.start()
            self._host_stop.clear()
            self._host_watch = threading.Thread(target=self._watch_host_addresses, name="egress-host-addresses",
                                                daemon=True)
            self._host_watch.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the proxy and the resolver. The tables stay, with the egress gate closed: sandboxes
        stay isolated and get no egress until the next start()."""
        self._host_stop.set()
        if self._host_watch is not None:
            self._host_watch.join(10)
            self._host_watch = None
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        self._set_gate(False)
        if self._dns is not None:
            self._dns.stop()
            self._dns = None
        if self._audit is not None:
            self._audit.close()
            self._audit = None

    def remove_rules(self) -> None:
        """Delete the appliance's nft tables (uninstall, tests). Nothing else is touched."""
        with self._lock:
            self.nft.apply(ruleset.render_delete(self.base))

    # --- the bridge and the sandboxes' taps --------------------------------------------------------

    def ensure_bridge(self) -> None:
        """The appliance bridge with its address (first of the subnet); idempotent."""
        bridge.ensure_bridge(self.config.bridge, ipaddress.IPv4Interface(f"{self.address}/{self.network.prefixlen}"))

    def create_tap(self, tap: str, mac: str) -> None:
        """A sandbox's tap, an isolated port of the bridge bound to its guest's MAC (its policy is
        attached separately)."""
        bridge.create_tap(tap, self.config.bridge, mac)

    def create_lone_tap(self, tap: str) -> None:
        """A tap on no bridge (a guest template's NIC: it reaches nothing, not even the host)."""
        bridge.create_lone_tap(tap)

    def delete_tap(self, tap: str) -> None:
        bridge.delete_link(tap)

    def remove_stray_taps(self, owned: set[str]) -> list[str]:
        """Delete taps with our prefix that no live sandbox owns; return their names."""
        removed = []
        for tap in bridge.links_with_prefix(self.config.tap_prefix):
            if tap not in owned:
                bridge.delete_link(tap)
                removed.append(tap)
        return removed

    # --- sandboxes -------------------------------------------------------------------------------

    def attach(self, sandbox_id: str, address: str, tap: str, policy: Policy, session_id: str | None = None,
               mac: str | None = None) -> None:
        """Record the sandbox's policy and give it its nft state (one transaction). `mac` is its
        guest's MAC: without one the bridge drops every frame from its tap."""
        entry = self._entry(SandboxPolicy(sandbox_id, str(address), tap, policy, session_id, mac))
        with self._lock:
            old = self.table.get(sandbox_id)
            stale = [e for e in self.table.entries() if e.address == entry.address and e.sandbox_id != sandbox_id]
            remove = [self._member(e) for e in ([old] if old else []) + stale]
            self.nft.apply(ruleset.render_change(self.base, remove=remove, add=[self._member(entry)]))
            for e in stale:
                self.table.remove(e.sandbox_id)
            self.table.put(entry)
        if mac:
            self._neighbor(bridge.set_neighbor, entry.address, mac)
        log.info("egress: attached %s at %s (%s)", sandbox_id, entry.address, entry.policy.describe)

    def _neighbor(self, change, address: str, *args) -> None:
        try:
            change(self.config.bridge, address, *args)
        except (NetlinkError, OSError) as e:  # the next ARP exchange corrects it; only slower
            log.warning("egress: could not update the host's neighbour entry of %s: %s", address, e)

    def detach(self, sandbox_id: str) -> None:
        """Remove the sandbox's policy and nft state. Unknown ids are ignored."""
        with self._lock:
            old = self.table.remove(sandbox_id)  # the proxy and resolver deny from here on
            if old is not None:
                self.nft.apply(ruleset.render_change(self.base, remove=[self._member(old)]))
                log.info("egress: detached %s", sandbox_id)
        if old is not None:
            self._neighbor(bridge.forget_neighbor, old.address)  # the next guest at this address has another MAC

    def reconcile(self, live: Iterable[SandboxPolicy | tuple]) -> None:
        """Make the policy table and nft state exactly `live` (id, address, tap, policy[, session_id[, mac]])."""
        entries = [self._entry(e if isinstance(e, SandboxPolicy) else SandboxPolicy(*e)) for e in live]
        with self._lock:
            if self._proxy is None and self._tables_exist():
                # Another process (the daemon) owns the proxy and the gate: change only the
                # sandboxes' set elements, in one transaction, and leave the gate as it is.
                current = self.table.entries()
                self.nft.apply(ruleset.render_change(
                    self.base, remove=[self._member(e) for e in current], add=[self._member(e) for e in entries]))
                self.table.replace_all(entries)
            else:
                self.table.replace_all(entries)
                self.nft.apply(ruleset.render(self._ruleset(entries)))

    def prepare_for_guests(self) -> None:
        """Before any guest boots, in whatever process boots it: the CA exists (guests trust it from
        their first boot) and the tables exist — with the gate closed if nobody opened it — so a
        guest is never on the bridge unpoliced, even when the daemon is not running."""
        self.dir.mkdir(parents=True, exist_ok=True)
        ca.ensure_ca(self.confdir)
        with self._lock:
            if not self._tables_exist():
                self.nft.apply(ruleset.render(self._ruleset(self.table.entries())))

    def _tables_exist(self) -> bool:
        return all(self.nft.table_exists(family, self.base.table) for family in ("inet", "bridge"))

    def entries(self) -> list[SandboxPolicy]:
        return self.table.entries()

    def has_credential(self, host: str) -> bool:
        """Whether the proxy holds a credential to inject for `host` (asked before sessions start)."""
        try:
            return bool(load_credentials(self.config.credentials_file).get(host.lower().rstrip(".")))
        except ValueError as e:  # an unsafe or broken file injects nothing: say so where it is asked
            raise EgressError(str(e), hint=f"fix {self.config.credentials_file}") from e

    def guest_settings(self, address: str) -> dict:
        """What the guest needs at boot: proxy variables, resolver, and the CA to trust."""
        if ipaddress.IPv4Address(address) not in self.network:
            raise PolicyError(f"{address} is not in the appliance subnet {self.network}")
        url = f"http://{self.address}:{self.config.proxy_port}"
        return {
            "proxy": {
                "http": url,
                "https": url,
                "no_proxy": ",".join(["localhost", "127.0.0.1", "::1", self.address]),
            },
            "dns": [self.address],
            "ca_certs": [ca.ca_cert_pem(self.confdir)] if ca.cert_path(self.confdir).exists() else [],
        }

    # --- internals -------------------------------------------------------------------------------

    def _entry(self, e: SandboxPolicy) -> SandboxPolicy:
        try:
            ip = ipaddress.IPv4Address(e.address)
        except ValueError as err:
            raise PolicyError(f"{e.sandbox_id}: {e.address!r} is not an IPv4 address") from err
        if ip not in self.network or str(ip) == self.address or ip in (self.network.network_address, self.network.broadcast_address):
            raise PolicyError(f"{e.sandbox_id}: {ip} is not a sandbox address in {self.network}")
        if not e.tap.startswith(self.config.tap_prefix) or len(e.tap) > 15:
            raise PolicyError(
                f"{e.sandbox_id}: tap {e.tap!r} must start with {self.config.tap_prefix!r} (the bridge rules match on it)"
            )
        policy = e.policy
        if policy.methods is None and self.level_methods.get(policy.level):
            policy = dataclasses.replace(policy, methods=self.level_methods[policy.level])
        if policy.level in self.level_ports:
            policy = dataclasses.replace(policy, ports=self.level_ports[policy.level])
        mac = e.mac
        if mac is not None:
            mac = mac.strip().lower()
            if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
                raise PolicyError(f"{e.sandbox_id}: {e.mac!r} is not a unicast MAC address")
        return dataclasses.replace(e, address=str(ip), policy=policy, mac=mac)

    @staticmethod
    def _member(e: SandboxPolicy) -> ruleset.Member:
        # Forwarding bypasses the proxy: not for a sandbox whose HTTP methods are restricted.
        return ruleset.Member(e.sandbox_id, e.address, e.tap, full=e.policy.level == FULL and e.policy.methods is None,
                              mac=e.mac)

    def _ruleset(self, entries: Iterable[SandboxPolicy]) -> ruleset.Ruleset:
        rs = self.base.with_members(self._member(e) for e in entries)
        return dataclasses.replace(rs, proxy_up=self._gate_up, host_addresses=tuple(sorted(read_host_addresses())))

    def _watch_host_addresses(self) -> None:
        """Keep the nft set of the host's own addresses current (the proxy reads them itself)."""
        try:
            watch = HostAddresses()
        except Exception as e:  # noqa: BLE001 - the rules built at start still hold the start's addresses
            log.error("egress: cannot watch the host's addresses: %s", e)
            return
        try:
            while not self._host_stop.is_set():
                if not watch.wait_change(1.0):
                    continue
                rs = dataclasses.replace(self.base, host_addresses=tuple(sorted(watch.current())))
                with self._lock:
                    try:
                        self.nft.apply(ruleset.render_host_addresses(rs))
                    except NftError as e:
                        log.error("egress: could not update the host's addresses: %s", e)
        finally:
            watch.close()

    def _set_gate(self, up: bool) -> None:
        with self._lock:
            self._gate_up = up
            try:
                self.nft.apply(ruleset.render_gate(dataclasses.replace(self.base, proxy_up=up)))
            except NftError as e:
                log.error("egress: could not %s the egress gate: %s", "open" if up else "close", e)
        log.info("egress gate %s", "open (proxy up)" if up else "closed (proxy down)")

    def _proxy_argv(self) -> list[str]:
        blocked = [*self.base.blocked, self.config.subnet]
        options: dict[str, object] = {
            "egress_policy_file": self.policy_file,
            "egress_audit_database": self.config.database_url,
            "egress_audit_host": self.config.appliance_host or "",
            "egress_credentials_file": self.config.credentials_file,
            "egress_static_hosts": self.config.static_hosts,
            "egress_dns_upstream": self.config.dns_upstream,
            "egress_blocked_networks": ",".join(blocked),
            "egress_request_rate": self.config.egress_request_rate,
        }
        if self.config.upstream_ca_file:
            options["ssl_verify_upstream_trusted_ca"] = self.config.upstream_ca_file
        return mitmdump_argv(
            self.address, self.config.proxy_port, self.config.transparent_proxy_port, self.confdir, options
        )

    @staticmethod
    def _proxy_env() -> dict[str, str]:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        return env
