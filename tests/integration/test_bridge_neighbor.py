"""A reused guest address must not keep the previous guest's MAC in the host's neighbour table:
with it, the host's packets to a new (cloned) guest went nowhere for ~50 s (the clone sends no ARP
that would correct it). Real netlink on a bridge of the test's own; no traffic is sent."""

from __future__ import annotations

import ipaddress
import os
import subprocess

import pytest

from netpolicy import bridge

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a bridge and its neighbour table")]

ADDRESS = "10.236.0.9"


def neighbour(name: str) -> str:
    return subprocess.run(["ip", "neigh", "show", ADDRESS, "dev", name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_neighbour_entry_follows_the_guest_at_an_address():
    name = f"aplnb{os.getpid() % 100000}"
    bridge.ensure_bridge(name, ipaddress.IPv4Interface("10.236.0.1/24"))
    try:
        bridge.set_neighbor(name, ADDRESS, "02:00:00:00:00:0a")  # the first guest at the address
        assert "lladdr 02:00:00:00:00:0a" in neighbour(name)
        bridge.set_neighbor(name, ADDRESS, "02:00:00:00:00:0b")  # the next one, at once
        assert "lladdr 02:00:00:00:00:0b" in neighbour(name)
        bridge.forget_neighbor(name, ADDRESS)
        assert neighbour(name) == ""
        bridge.forget_neighbor(name, ADDRESS)  # nothing there: no error
    finally:
        bridge.delete_link(name)
