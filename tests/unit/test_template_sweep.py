"""Template generations on disk: the newest complete one of a key stays, and so does every one a
live sandbox is backed by; the rest go — but not a generation still being built."""

import json
import os
import time
from dataclasses import replace

from appliance.sandbox.templates import BUILDING_GRACE, TemplateStore


class NoHypervisor:  # sweep and find only read files
    pass


def store(cfg, tmp_path):
    return TemplateStore(replace(cfg, template_dir=str(tmp_path / "ram")), NoHypervisor(), egress=None, instance="test")


def generation(s: TemplateStore, name: str, *, complete: bool = True, ram: bool = True, age: float = 0.0) -> None:
    disk = s.disk_root / name
    disk.mkdir(parents=True)
    (disk / "disk.qcow2").write_bytes(b"qcow")
    if ram:
        (s.ram_root / name).mkdir(parents=True)
        (s.ram_root / name / "ram").write_bytes(b"r")
        (s.ram_root / name / "state").write_bytes(b"s")
    if complete:
        (disk / "template.json").write_text(json.dumps({"made_at": time.time()}))
    stamp = time.time() - age
    for path in (disk / "template.json", disk, s.ram_root / name):
        if path.exists():
            os.utime(path, (stamp, stamp))


def test_sweep_keeps_the_current_and_the_used_generations(cfg, tmp_path):
    s = store(cfg, tmp_path)
    generation(s, "aaaa-000001", age=300)  # older generation of aaaa, still backing a sandbox
    generation(s, "aaaa-000002", age=200)  # older, unused
    generation(s, "aaaa-000003", age=100)  # the current one
    generation(s, "aaaa-000004", ram=False)  # newer, but its RAM is gone (retired): not current
    generation(s, "bbbb-000001", complete=False)  # being built right now
    generation(s, "cccc-000001", complete=False, age=BUILDING_GRACE + 60)  # a build that died long ago
    removed = s.sweep(in_use={"aaaa-000001"})
    assert sorted(removed) == ["aaaa-000002", "aaaa-000004", "cccc-000001"]
    assert sorted(p.name for p in s.disk_root.iterdir()) == ["aaaa-000001", "aaaa-000003", "bbbb-000001"]
    assert sorted(p.name for p in s.ram_root.iterdir()) == ["aaaa-000001", "aaaa-000003", "bbbb-000001"]


def test_find_returns_the_newest_complete_generation(cfg, tmp_path):
    from appliance.sandbox.templates import TemplateKey

    s = store(cfg, tmp_path)
    key = TemplateKey("hash", "qemu", 2, 768, 16, "7.2.0", "agent")
    assert s.find(key) is None
    generation(s, f"{key.id}-000001", age=100)
    generation(s, f"{key.id}-000002", age=10)
    generation(s, f"{key.id}-000003", ram=False)
    assert s.find(key).name == f"{key.id}-000002"
