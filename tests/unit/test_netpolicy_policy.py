import json
import os

import pytest

from netpolicy.allowlist import Policy, PolicyError
from netpolicy.policy import PolicyTable, SandboxPolicy


def _e(i: int, level: str = "limited", **kw) -> SandboxPolicy:
    return SandboxPolicy(f"sb-{i}", f"10.213.0.{10 + i}", f"aplt{i}", Policy.make(level), **kw)


def test_writer_and_a_separate_reader_agree(tmp_path):
    path = tmp_path / "egress" / "policy.json"
    writer, reader = PolicyTable(path), PolicyTable(path)  # a reader as in another process
    assert reader.lookup("10.213.0.11") is None
    writer.put(_e(1, session_id="s-1"))
    got = reader.lookup("10.213.0.11")
    assert got == _e(1, session_id="s-1")
    writer.put(_e(2, "full"))
    assert reader.lookup("10.213.0.12").policy.level == "full"
    writer.remove("sb-1")
    assert reader.lookup("10.213.0.11") is None
    assert [e.sandbox_id for e in reader.entries()] == ["sb-2"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_every_change_is_seen_however_fast(tmp_path):
    path = tmp_path / "policy.json"
    writer, reader = PolicyTable(path), PolicyTable(path)
    for level in ["none", "full"] * 50:  # same size each time: only the inode tells them apart
        writer.put(_e(1, level))
        assert reader.lookup("10.213.0.11").policy.level == level


def test_an_address_belongs_to_one_sandbox(tmp_path):
    t = PolicyTable(tmp_path / "p.json")
    t.put(_e(1))
    t.put(SandboxPolicy("sb-new", "10.213.0.11", "aplt9", Policy.make("none")))
    assert t.lookup("10.213.0.11").sandbox_id == "sb-new"
    assert t.get("sb-1") is None
    with pytest.raises(PolicyError):
        t.replace_all([_e(1), SandboxPolicy("sb-x", "10.213.0.11", "aplt8", Policy.make())])


def test_replace_all_is_exact(tmp_path):
    t = PolicyTable(tmp_path / "p.json")
    for i in range(5):
        t.put(_e(i))
    t.replace_all([_e(2), _e(7)])
    assert [e.sandbox_id for e in t.entries()] == ["sb-2", "sb-7"]


def test_unreadable_table_denies_everything(tmp_path):
    path = tmp_path / "p.json"
    PolicyTable(path).put(_e(1))
    path.write_text("{not json")
    assert PolicyTable(path).lookup("10.213.0.11") is None
    path.write_text(json.dumps({"version": 99, "sandboxes": []}))
    assert PolicyTable(path).lookup("10.213.0.11") is None


def test_bad_address_refused():
    with pytest.raises(PolicyError):
        SandboxPolicy("sb-1", "not-an-ip", "aplt1", Policy.make())
