"""The host's own addresses, kept current: what no sandbox may reach, at any level.

A `full` sandbox may reach any public address, but the host itself has public addresses too (its
sshd, the console, a database listening on 0.0.0.0): the proxy runs on the host, so a connection
it opens to one of them arrives as a local connection. The blocked networks cannot list them
(they are the host's, and they change: DHCP, a new interface), so they are read from the kernel
(netlink) at start and again whenever the kernel announces an address change, with a periodic
re-read as a backstop.

The cloud platform endpoints outside the private ranges are in `ruleset.PLATFORM_ENDPOINTS`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import select
import socket
import subprocess
import threading
import time

log = logging.getLogger(__name__)

# rtnetlink multicast groups announcing address changes (linux/rtnetlink.h).
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100

# How long a read of the host's addresses is trusted without a change notification.
MAX_AGE = 5.0


def read_host_addresses() -> frozenset[str]:
    """Every address on every interface of this network namespace, IPv4 and IPv6.

    `ip -j addr` rather than pyroute2: this also runs inside mitmproxy's event loop, where
    pyroute2's synchronous API (an event loop of its own) cannot run.
    """
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True, timeout=10).stdout
    addresses = set()
    for link in json.loads(out or "[]"):
        for a in link.get("addr_info", []):
            local = a.get("local")
            if local:
                addresses.add(str(ipaddress.ip_address(local.split("%", 1)[0])))
    return frozenset(addresses)


def is_host_address(address: str, host_addresses: frozenset[str]) -> bool:
    """Is `address` (any text form, IPv4-mapped included) one of `host_addresses`?"""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip) in host_addresses


def _watch_socket() -> socket.socket:
    """A netlink socket that becomes readable when any address is added or removed."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
    s.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    return s


class HostAddresses:
    """The host's addresses, re-read when netlink announces a change (or after MAX_AGE)."""

    def __init__(self, reader=read_host_addresses, max_age: float = MAX_AGE):
        self._reader = reader
        self._max_age = max_age
        self._lock = threading.Lock()
        self._watch: socket.socket | None = None
        try:
            self._watch = _watch_socket()
        except OSError as e:  # without notifications the periodic re-read still works
            log.warning("host addresses: no change notifications (%s); re-reading every %.0f s", e, max_age)
            self._watch = None
        self._addresses = self._reader()
        self._read_at = time.monotonic()

    def _changed(self) -> bool:
        if self._watch is None:
            return False
        changed = False
        while True:  # drain: the content does not matter, the full list is re-read
            try:
                if not self._watch.recv(65536):
                    break
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ENOBUFS: changes were lost, which still means "changed"
                pass
            changed = True
        return changed

    def current(self) -> frozenset[str]:
        with self._lock:
            if self._changed() or time.monotonic() - self._read_at > self._max_age:
                self._addresses = self._reader()
                self._read_at = time.monotonic()
            return self._addresses

    def __contains__(self, address: str) -> bool:
        return is_host_address(address, self.current())

    def wait_change(self, timeout: float) -> bool:
        """Block until the kernel announces an address change (True) or `timeout` passes."""
        if self._watch is None:
            time.sleep(timeout)
            return False
        if not select.select([self._watch.fileno()], [], [], timeout)[0]:
            return False
        with self._lock:
            self._changed()
            self._addresses = self._reader()
            self._read_at = time.monotonic()
        return True

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
