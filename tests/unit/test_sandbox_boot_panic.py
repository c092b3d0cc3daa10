"""A guest whose kernel panics while booting is reported at once, with the console, instead of
after `ready_timeout` (a panicked guest keeps its domain running but never answers SSH)."""

from __future__ import annotations

import pytest

from appliance.errors import NotReady
from appliance.models import Sandbox
from appliance.sandbox.manager import SandboxManager


class RunningDomain:
    """libvirt as far as wait_ready asks: the domain is running."""

    def is_running(self, name):
        return True


def test_a_kernel_panic_while_booting_is_reported_at_once(db, cfg):
    mgr = SandboxManager(cfg, RunningDomain(), egress=object())
    sandbox = Sandbox.create(profile="minimal", image_dir="-", vcpus=1, memory_mb=512, disk_gb=4,
                             address="127.0.0.9", accel="tcg")  # loopback: nothing of ours listens there
    console = mgr.files(sandbox).console_log
    console.parent.mkdir(parents=True)
    console.write_text("[    4.86] RIP: 0010:__kmalloc\n[    4.86] Kernel panic - not syncing: Fatal exception\n")
    with pytest.raises(NotReady, match="kernel panicked") as e:  # not "did not answer SSH within 60 s"
        mgr.wait_ready(sandbox, timeout=60)
    assert "Fatal exception" in e.value.message  # the console comes with it
