"""The libvirt wrapper on libvirt's test:/// driver: no root, no libvirtd, one node file per test."""

import dataclasses

import pytest
from test_domain_xml import CASES

from appliance.errors import HypervisorUnavailable
from appliance.sandbox.domain_xml import render
from appliance.sandbox.hypervisor import Hypervisor

NODE = """<node>
  <domain type='test'>
    <name>someone-elses</name>
    <memory>65536</memory>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


@pytest.fixture
def hv(tmp_path):
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    hv = Hypervisor(f"test://{node}")
    yield hv
    hv.close()


def spec(sandbox_id, instance="me"):
    base = CASES["sandbox_tcg"]
    return dataclasses.replace(base, domain_type="test", name=f"appliance-{sandbox_id}", sandbox_id=sandbox_id,
                               instance=instance, tap=None, fw_cfg={})


def test_start_tag_and_destroy(hv):
    name = hv.start(render(spec("sb-1")))
    hv.start(render(spec("sb-2", instance="other")))
    assert hv.is_running(name)
    tags = {t.sandbox_id: t for t in hv.tagged_domains()}
    assert set(tags) == {"sb-1", "sb-2"}, "only domains with our metadata element are listed"
    assert tags["sb-1"].instance == "me" and tags["sb-2"].instance == "other"
    assert hv.destroy(name) is True
    assert not hv.exists(name), "transient domains leave no definition behind"
    assert hv.destroy(name) is False, "destroying twice is not an error"
    assert hv.exists("someone-elses")


def test_unreachable_libvirt_is_a_clear_error(tmp_path):
    hv = Hypervisor(f"qemu+unix:///system?socket={tmp_path}/no-libvirtd.sock")
    with pytest.raises(HypervisorUnavailable) as e:
        hv.versions()
    assert "libvirtd" in e.value.hint
