"""A full tmpfs under template_dir: the template is refused before any guest boots (qemu would
otherwise die of SIGBUS as the guest's memory fills the file), its row says why, nothing is left,
and the manager's fallback is a cold boot. A real tmpfs, mounted small."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from types import SimpleNamespace

import pytest

from appliance.errors import SandboxError
from appliance.models import GuestTemplate
from appliance.sandbox.templates import TemplateKey, TemplateStore

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mount a tmpfs")]


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "shm"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_template_that_does_not_fit_its_tmpfs_is_refused_up_front(cfg, db, small_tmpfs):
    store = TemplateStore(replace(cfg, template_dir=str(small_tmpfs / "tpl")), hv=None, egress=None, instance="t")
    key = TemplateKey("hash", "qemu", 1, 512, 4, "7.2.0", "agent")
    image = SimpleNamespace(profile="minimal", dir=cfg.state_dir / "images" / "minimal-x")
    with pytest.raises(SandboxError) as e:
        store.build(key, image)  # hv=None: it must not get as far as libvirt
    assert "MiB free" in e.value.message and "576 MiB" in e.value.message and "tmpfs" in e.value.hint
    row = GuestTemplate.get(GuestTemplate.key == key.id)
    assert row.state == "failed" and "MiB free" in row.error
    assert list((small_tmpfs / "tpl").iterdir()) == [], "nothing made"
    assert not (cfg.state_dir / "templates").exists() or not list((cfg.state_dir / "templates").iterdir())
