"""The test fixtures' guard before they route test addresses in the host's own namespace
(tests/integration/netns.py check_test_routes), against fake route tables and package sources."""

from __future__ import annotations

import integration.netns as N
import pytest

# As `ip -j -4 route show table all` prints them on these hosts, plus a package mirror route.
ROUTES = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "192.0.2.2"},
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local", "scope": "host"},
    {"type": "local", "dst": "192.0.2.2", "dev": "lo", "table": "local", "scope": "host"},
]
MIRROR = {"203.0.113.80": "deb.debian.org, pypi.org"}


def test_addresses_only_the_default_route_covers_pass():
    N.check_test_routes(["203.0.113.10", "203.0.113.20", "198.51.100.7"], routes=ROUTES, package_addresses=MIRROR)
    N.check_test_routes([], routes=ROUTES, package_addresses=MIRROR)


def test_an_address_where_a_package_source_resolves_is_refused():
    with pytest.raises(N.RouteConflict) as e:
        N.check_test_routes(["203.0.113.10", "203.0.113.80"], routes=ROUTES, package_addresses=MIRROR)
    message = str(e.value)
    assert "203.0.113.80 is where the package source deb.debian.org, pypi.org resolves" in message
    assert "203.0.113.10" not in message


@pytest.mark.parametrize(("route", "address", "named"), [
    ({"dst": "203.0.113.0/24", "gateway": "192.0.2.1", "dev": "eth0"}, "203.0.113.10",
     "'203.0.113.0/24 via 192.0.2.1 dev eth0'"),
    ({"dst": "203.0.113.20", "gateway": "198.51.100.2", "dev": "aplvmup0"}, "203.0.113.20",  # a left-over /32
     "'203.0.113.20 via 198.51.100.2 dev aplvmup0'"),
    ({"dst": "10.0.0.0/8", "dev": "tun0", "table": "vpn"}, "10.250.3.9", "'10.0.0.0/8 dev tun0 table vpn'"),
    ({"type": "blackhole", "dst": "203.0.113.64/26"}, "203.0.113.66", "'blackhole 203.0.113.64/26'"),
])
def test_an_address_an_existing_route_covers_is_refused(route, address, named):
    with pytest.raises(N.RouteConflict) as e:
        N.check_test_routes(["198.51.100.7", address], routes=[*ROUTES, route], package_addresses={})
    message = str(e.value)
    assert f"{address} is covered by the host's route {named}" in message
    assert "198.51.100.7" not in message and "ip route get" in message


def test_the_hosts_own_subnet_and_addresses_are_refused():
    with pytest.raises(N.RouteConflict, match=r"192\.0\.2\.2 is covered .*'local 192\.0\.2\.2 dev lo table local'"):
        N.check_test_routes(["192.0.2.2"], routes=ROUTES, package_addresses={})
    with pytest.raises(N.RouteConflict, match=r"192\.0\.2\.9 is covered .*'192\.0\.2\.0/24 dev eth0'"):
        N.check_test_routes(["192.0.2.9"], routes=ROUTES, package_addresses={})


def test_package_sources_come_from_the_apt_sources_and_resolve_through_etc_hosts(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\n# http://snapshot.debian.org/archive/debian/2025\n"
                      "URIs: http://deb.debian.org/debian\nSuites: bookworm\n")
    one_line = tmp_path / "extra.list"
    one_line.write_text("deb [signed-by=/k.gpg] https://apt.example.org:8443/repo stable main  # a comment\n")
    assert N.apt_source_hosts([deb822, one_line, tmp_path / "missing.list"]) == {"deb.debian.org", "apt.example.org"}
    # localhost comes from /etc/hosts like the mirror's names do here; an unknown name is skipped
    found = N.package_source_addresses(["localhost", "no-such-host.invalid"])
    assert found == {"127.0.0.1": "localhost"}
