"""Real guests: one appliance instance per test run, on its own bridge, subnet and state dir.

Everything lives under a temporary state dir and a bridge/tap prefix no real appliance uses, so a
run never touches a developer's running appliance; what a test leaves behind is reconciled away
at the end and the bridge removed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from appliance.db import open_database
from appliance.models import Sandbox, SandboxState
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sandbox.manager import SandboxManager
from netpolicy import bridge

from appliance_world import remove_shared_templates
from helpers import make_config, need_root

TEST_NET = dict(bridge="apltest0", subnet="10.214.0.0/24", tap_prefix="aplx", egress_table="appltest")


@pytest.fixture(scope="session", autouse=True)
def shared_templates():
    """The templates the run's worlds share (appliance_world): made fresh, removed at the end."""
    remove_shared_templates()
    yield
    remove_shared_templates()


@pytest.fixture(scope="session")
def vm_state():
    need_root()
    # qemu runs as libvirt-qemu and must traverse to the overlays: pytest's own temp dirs are 0700
    # (and re-made 0700 by any other pytest run), so guests' state lives under /var/tmp instead.
    state = Path(tempfile.mkdtemp(prefix="appliance-vmtest-", dir="/var/tmp"))
    state.chmod(0o711)
    yield state
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def vm_cfg(vm_state):
    return make_config(vm_state, **TEST_NET)


@pytest.fixture(scope="session")
def hv(vm_cfg):
    hv = Hypervisor(vm_cfg.libvirt_uri)
    yield hv
    hv.close()


@pytest.fixture(scope="session")
def manager(vm_cfg, hv):
    database = open_database(vm_cfg.database_url)
    mgr = SandboxManager(vm_cfg, hv)
    yield mgr
    for sandbox in Sandbox.select().where(Sandbox.state.in_(SandboxState.LIVE)):
        try:
            mgr.destroy(sandbox.id)
        except Exception:
            pass
    Sandbox.delete().execute()  # whatever is left is an orphan now: reconcile removes it
    mgr.reconcile(creating_grace=0)
    mgr.egress.remove_rules()
    bridge.delete_link(vm_cfg.bridge)
    database.close()
