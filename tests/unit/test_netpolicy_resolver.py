import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from netpolicy.allowlist import Policy
from netpolicy.audit import AuditWriter
from netpolicy.policy import PolicyTable, SandboxPolicy
from netpolicy.resolver import FilteringResolver, StaticHosts, Upstream, parse_upstreams


class CountingUpstream(Upstream):
    """The real cache and static map; the network hop replaced by a fixed zone."""

    def __init__(self, zone, **kw):
        super().__init__([("192.0.2.53", 53)], StaticHosts.parse("203.0.113.10 pypi.org files.pythonhosted.org"), **kw)
        self.zone = zone
        self.forwarded = []

    def _forward(self, qname, rdtype, rdclass):
        self.forwarded.append(qname.to_text(omit_final_dot=True))
        r = dns.message.make_response(dns.message.make_query(qname, rdtype))
        name = qname.to_text(omit_final_dot=True)
        if name in self.zone:
            r.answer.append(dns.rrset.from_text(qname, 120, "IN", "A", self.zone[name]))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r


class Audit:
    def __init__(self):
        self.rows = []

    def submit(self, **row):
        self.rows.append(row)

    decision = AuditWriter.decision  # the real attribution, into self.submit


@pytest.fixture
def resolver(tmp_path):
    table = PolicyTable(tmp_path / "policy.json")
    table.put(SandboxPolicy("sb-l", "10.213.0.10", "aplt0", Policy.make("limited"), "s-l"))
    table.put(SandboxPolicy("sb-c", "10.213.0.11", "aplt1", Policy.make("custom", ["*.example.com"])))
    table.put(SandboxPolicy("sb-f", "10.213.0.12", "aplt2", Policy.make("full")))
    up = CountingUpstream({"a.example.com": "203.0.113.11", "anything.test": "203.0.113.99"})
    return FilteringResolver(table, up, Audit())


def ask(resolver, client, name, rdtype="A", **kw):
    q = dns.message.make_query(name, rdtype, **kw)
    wire = resolver.handle(q.to_wire(), client, **({"max_size": 512} if not kw.get("use_edns") else {}))
    r = dns.message.from_wire(wire)
    assert r.id == q.id and r.flags & dns.flags.QR
    return dns.rcode.to_text(r.rcode()), [rr.address for rrset in r.answer for rr in rrset if hasattr(rr, "address")]


def test_allowed_static_name(resolver):
    assert ask(resolver, "10.213.0.10", "pypi.org") == ("NOERROR", ["203.0.113.10"])
    assert ask(resolver, "10.213.0.10", "PyPI.org.", "AAAA") == ("NOERROR", [])  # no IPv6
    assert resolver.upstream.forwarded == []


def test_denied_names_are_refused_and_never_forwarded(resolver):
    for name in ("evil.example", "x.pypi.org", "secret-data.evil.example"):
        assert ask(resolver, "10.213.0.10", name) == ("REFUSED", [])
    assert ask(resolver, "10.213.0.11", "example.com.evil.net") == ("REFUSED", [])
    assert ask(resolver, "10.213.0.11", "pypi.org") == ("REFUSED", [])
    assert resolver.upstream.forwarded == []
    row = resolver.audit.rows[0]
    assert row["verdict"] == "deny" and row["sandbox_id"] == "sb-l" and row["session_id"] == "s-l"
    assert row["source"] == "dns" and row["method"] == "A" and row["host"] == "evil.example"


def test_unknown_address_is_refused(resolver):
    assert ask(resolver, "10.213.0.99", "pypi.org") == ("REFUSED", [])
    assert "no policy" in resolver.audit.rows[-1]["reason"]


def test_forwarding_and_cache(resolver):
    assert ask(resolver, "10.213.0.11", "a.example.com") == ("NOERROR", ["203.0.113.11"])
    assert ask(resolver, "10.213.0.11", "A.example.com") == ("NOERROR", ["203.0.113.11"])
    assert ask(resolver, "10.213.0.11", "b.example.com") == ("NXDOMAIN", [])
    assert ask(resolver, "10.213.0.11", "b.example.com") == ("NXDOMAIN", [])
    assert resolver.upstream.forwarded == ["a.example.com", "b.example.com"]
    assert resolver.upstream.hits == 2


def test_full_level_resolves_anything(resolver):
    assert ask(resolver, "10.213.0.12", "anything.test") == ("NOERROR", ["203.0.113.99"])


def test_malformed_and_unsupported(resolver):
    assert resolver.handle(b"\x00\x01garbage", "10.213.0.10") is None
    formerr = resolver.handle(b"\x12\x34\x01\x00" + b"\x00\x01" + b"\xff" * 10, "10.213.0.10")
    assert formerr[:2] == b"\x12\x34" and dns.message.from_wire(formerr).rcode() == dns.rcode.FORMERR
    q = dns.message.make_query("pypi.org", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(resolver.handle(q.to_wire(), "10.213.0.10")).rcode() == dns.rcode.NOTIMP
    r = dns.message.make_response(dns.message.make_query("pypi.org", "A"))
    assert resolver.handle(r.to_wire(), "10.213.0.10") is None  # responses are not queries


def test_truncation_over_udp(tmp_path):
    table = PolicyTable(tmp_path / "p.json")
    table.put(SandboxPolicy("sb-f", "10.213.0.12", "aplt2", Policy.make("full")))
    many = StaticHosts({"big.test": tuple(f"203.0.113.{i}" for i in range(1, 100))})
    res = FilteringResolver(table, Upstream([], many))
    wire = res.handle(dns.message.make_query("big.test", "A").to_wire(), "10.213.0.12", max_size=512)
    r = dns.message.from_wire(wire)
    assert r.flags & dns.flags.TC and not r.answer
    full = dns.message.from_wire(res.handle(dns.message.make_query("big.test", "A").to_wire(), "10.213.0.12"))
    assert len(full.answer[0]) == 99


def test_static_hosts_parse_and_load(tmp_path):
    text = "# comment\n203.0.113.10 pypi.org  www.pypi.org\n::1 six.test\n203.0.113.11 A.Example.com.\nbad\n"
    s = StaticHosts.parse(text)
    assert s.get("PYPI.ORG") == ("203.0.113.10",) and s.get("a.example.com") == ("203.0.113.11",)
    assert s.get("six.test") is None and len(s) == 3
    f = tmp_path / "hosts"
    f.write_text(text)
    assert StaticHosts.load(str(f)).mapping == s.mapping
    assert StaticHosts.load("203.0.113.1 a.test; 203.0.113.2 b.test").get("b.test") == ("203.0.113.2",)
    assert len(StaticHosts.load("")) == 0


def test_parse_upstreams(tmp_path):
    assert parse_upstreams("1.1.1.1, 192.0.2.1:5353") == [("1.1.1.1", 53), ("192.0.2.1", 5353)]
    rc = tmp_path / "resolv.conf"
    rc.write_text("search x\nnameserver 192.0.2.9\nnameserver ::1\n")
    assert parse_upstreams("", str(rc)) == [("192.0.2.9", 53), ("::1", 53)]
    with pytest.raises(ValueError):
        parse_upstreams("not-an-ip")


def test_addresses_for_the_proxy():
    up = CountingUpstream({"a.example.com": "203.0.113.11"})
    assert up.addresses("pypi.org") == ["203.0.113.10"]
    assert up.addresses("a.example.com") == ["203.0.113.11"]
    assert up.addresses("nope.example.com") == []
