"""Pure protocol parts of the git proxy: pkt-lines, the push request, the ref policy, the report."""

from __future__ import annotations

import gzip
import io

import pytest

from appliance.gitproxy import pktline as P
from appliance.gitproxy.mirror import parse_push_porcelain
from appliance.gitproxy.server import ROUTE, BodyTooLarge, GunzipReader, LimitedReader, remote_url

A = "a" * 40
B = "b" * 40
Z = "0" * 40


def request(*lines: str, pack: bytes = b"") -> io.BytesIO:
    return io.BytesIO(b"".join(P.pkt(x) for x in lines) + P.FLUSH + pack)


def test_pkt_encoding_and_reading():
    assert P.pkt("hello\n") == b"000ahello\n"
    assert P.pkt(b"") == b"0004"
    r = P.PktReader(io.BytesIO(b"000ahello\n0004" + P.FLUSH))
    assert r.read() == b"hello\n"
    assert r.read() == b""
    assert r.read() is None
    with pytest.raises(P.ProtocolError):
        P.PktReader(io.BytesIO(b"zzzz")).read()
    with pytest.raises(P.ProtocolError):
        P.PktReader(io.BytesIO(b"0003")).read()
    with pytest.raises(P.ProtocolError, match="end of request"):
        P.PktReader(io.BytesIO(b"0010abc")).read()


def test_push_request_parsing_leaves_the_pack_unread():
    body = request(f"{Z} {A} refs/heads/work\0report-status side-band-64k agent=git/2.39\n",
                   f"{A} {B} refs/heads/main\n", pack=b"PACK...")
    req = P.parse_push_request(P.PktReader(body))
    assert req.commands == [P.Command(Z, A, "refs/heads/work"), P.Command(A, B, "refs/heads/main")]
    assert req.capabilities == {"report-status", "side-band-64k", "agent=git/2.39"}
    assert req.commands[0].is_create and not req.commands[0].is_delete
    assert req.sideband == P.SIDEBAND_64K_DATA
    assert body.read() == b"PACK..."


def test_push_request_shallow_probe_and_garbage():
    req = P.parse_push_request(P.PktReader(request(f"shallow {B}\n", f"{Z} {A} refs/heads/w\0report-status\n")))
    assert req.shallow == [B] and len(req.commands) == 1 and req.sideband == 0
    probe = P.parse_push_request(P.PktReader(io.BytesIO(P.FLUSH)))  # git's probe before a big push
    assert probe.commands == []
    for bad in (f"{Z} nothex refs/heads/w\0x\n", f"{Z} {A}\0x\n", "push-cert\0caps\n"):
        with pytest.raises(P.ProtocolError):
            P.parse_push_request(P.PktReader(request(bad)))


@pytest.mark.parametrize("old,new,ref,allowed", [
    (Z, A, "refs/heads/claude/x", True),  # create
    (A, B, "refs/heads/claude/x", True),  # update (fast-forward or not: upstream decides)
    (A, Z, "refs/heads/claude/x", False),  # delete
    (A, B, "refs/heads/main", False),
    (Z, A, "refs/heads/claude/x2", False),
    (Z, A, "refs/heads/claude", False),
    (Z, A, "refs/tags/claude/x", False),
    (Z, A, "refs/heads/claude/x/../main", False),
    (Z, A, "HEAD", False),
])  # fmt: skip
def test_ref_policy(old, new, ref, allowed):
    why = P.refusal(P.Command(old, new, ref), "claude/x")
    assert (why is None) == allowed
    if not allowed:
        assert "refs/heads/claude/x" in why


def test_receive_advertisement():
    adv = P.receive_advertisement([(A, "refs/heads/main"), (B, "refs/tags/v1")])
    r = P.PktReader(io.BytesIO(adv))
    assert r.read() == b"# service=git-receive-pack\n"
    assert r.read() is None
    first = r.read()
    assert first.startswith(f"{A} refs/heads/main\0".encode()) and b"report-status" in first
    assert b"push-options" not in first and b"atomic" not in first
    assert r.read() == f"{B} refs/tags/v1\n".encode()
    assert r.read() is None
    empty = P.PktReader(io.BytesIO(P.receive_advertisement([])))
    empty.read(), empty.read()
    assert empty.read().startswith(f"{Z} capabilities^{{}}\0".encode())


def test_report_status_plain_and_sidebanded():
    req = P.PushRequest([], {"report-status"}, [])
    out = P.report_status("ok", [("refs/heads/w", None), ("refs/heads/main", "no\nway")], ["hi"], req)
    assert out == (P.pkt("unpack ok\n") + P.pkt("ok refs/heads/w\n") + P.pkt("ng refs/heads/main no way\n")
                   + P.FLUSH)
    req.capabilities.add("side-band-64k")
    out = P.report_status("ok", [("refs/heads/w", None)], ["hello"], req)
    r = P.PktReader(io.BytesIO(out))
    assert r.read() == b"\x02hello\n"
    inner = r.read()
    assert inner[:1] == b"\x01"
    assert inner[1:] == P.pkt("unpack ok\n") + P.pkt("ok refs/heads/w\n") + P.FLUSH
    assert r.read() is None
    # No report-status asked for: nothing but the flush.
    assert P.report_status("ok", [], [], P.PushRequest([], {"side-band-64k"}, [])) == P.FLUSH


def test_sideband_splits_long_data_and_err_packet():
    data = b"x" * 70000
    r = P.PktReader(io.BytesIO(P.sideband(1, data)))
    parts = [r.read(), r.read()]
    assert [len(p) for p in parts] == [P.SIDEBAND_64K_DATA + 1, 70000 - P.SIDEBAND_64K_DATA + 1]
    assert P.error_packet("upstream\nunreachable") == P.pkt("ERR upstream unreachable\n")


def test_push_porcelain_parsing():
    ref = "refs/heads/w"
    ok = f"To http://x/r.git\n*\t{A}:{ref}\t[new branch]\nDone\n"
    assert parse_push_porcelain(ok, ref).ok
    assert parse_push_porcelain(f"=\t{A}:{ref}\t[up to date]\nDone\n", ref).ok
    nff = parse_push_porcelain(f"To x\n!\t{A}:{ref}\t[rejected] (non-fast-forward)\nDone\n", ref)
    assert not nff.ok and nff.reason.startswith("upstream refused: non-fast-forward")
    hook = parse_push_porcelain(f"!\t{A}:{ref}\t[remote rejected] (pre-receive hook declined)\n", ref)
    assert hook.reason == "upstream refused: pre-receive hook declined"
    assert "fetch" in parse_push_porcelain(f"!\t{A}:{ref}\t[rejected] (fetch first)\n", ref).reason
    assert parse_push_porcelain("", ref) is None
    assert parse_push_porcelain(f"*\t{A}:refs/heads/other\t[new branch]\n", ref) is None


def test_routes_and_remote_url():
    m = ROUTE.match("/acme/api.git/info/refs")
    assert m and m.group("key") == "acme/api" and m.group("action") == "info/refs"
    assert ROUTE.match("/api/git-receive-pack").group("key") == "api"
    assert ROUTE.match("/a.git/objects/info/packs") is None
    assert remote_url("agt_x", "acme/api", "10.213.0.1", 3130) == "http://git:agt_x@10.213.0.1:3130/acme/api.git"


def test_gunzip_and_limits():
    raw = b"0032want " + b"a" * 40 + b"\n" * 100000
    r = GunzipReader(io.BytesIO(gzip.compress(raw)))
    got = b""
    while chunk := r.read(1000):
        got += chunk
    assert got == raw
    with pytest.raises(P.ProtocolError):
        GunzipReader(io.BytesIO(b"not gzip at all")).read(10)
    lim = LimitedReader(io.BytesIO(b"x" * 100), 50)
    with pytest.raises(BodyTooLarge):
        while lim.read(30):
            pass
