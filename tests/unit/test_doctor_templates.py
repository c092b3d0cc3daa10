"""`appliance doctor` says whether guest templates can work on this host and, if not, why: the
template dir's access for qemu, AppArmor's rule for it, and the newest template that failed.
Every host path is a parameter, so these run the same on any machine."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from appliance import doctor
from appliance.doctor import FAIL, OK, WARN
from appliance.models import GuestTemplate

from helpers import make_config


@pytest.fixture
def open_dir():
    """A directory every user may traverse (pytest's own tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="aplh12b-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


def on(cfg, template_dir):
    return make_config(cfg.state_dir, database_url=cfg.database_url, guest_templates="on",
                       template_dir=str(template_dir))


def test_the_template_dir_must_let_qemu_through(cfg, open_dir):
    where = open_dir / "tpl"
    assert doctor.check_template_access(on(cfg, where)).status == WARN, "not there yet: the first template makes it"
    where.mkdir(mode=0o711)
    ok = doctor.check_template_access(on(cfg, where))
    assert ok.status == OK and "owned by root" in ok.detail
    open_dir.chmod(0o700)
    shut = doctor._guard("template dir access", lambda: doctor.check_template_access(on(cfg, where)))
    assert shut.status == FAIL and str(open_dir) in shut.detail and "chmod o+x" in shut.hint
    open_dir.chmod(0o711)
    shutil.chown(where, user="nobody")
    odd = doctor.check_template_access(on(cfg, where))
    assert odd.status == WARN and "nobody" in odd.detail and "chown libvirt-qemu" in odd.hint
    assert doctor.check_template_access(on(cfg, where), qemu_user="nobody").status == OK


def test_apparmor_needs_the_local_rule_for_the_template_dir(cfg, tmp_path):
    conf = on(cfg, "/dev/shm/appliance-templates")
    enabled, qemu_conf, rules = tmp_path / "enabled", tmp_path / "qemu.conf", tmp_path / "libvirt-qemu"

    def check():
        return doctor.check_template_apparmor(conf, enabled=enabled, qemu_conf=qemu_conf, local_rules=rules)

    assert check().status == OK and "not enabled" in check().detail  # no AppArmor module at all
    enabled.write_text("N\n")
    assert check().status == OK
    enabled.write_text("Y\n")
    qemu_conf.write_text('#security_driver = "selinux"\n')  # unset: libvirt confines guests with AppArmor
    missing = check()
    assert missing.status == FAIL and "cold-boot" in missing.detail
    assert '"/dev/shm/appliance-templates/**" rwk,' in missing.hint
    rules.write_text("# Site-specific additions\n  /dev/shm/appliance-templates/** r,\n")
    assert check().status == FAIL, "read-only is not enough: the template writes its RAM file"
    rules.write_text('# BEGIN appliance\n  "/dev/shm/appliance-templates/**" rwk,\n# END appliance\n')
    assert check().status == OK
    rules.write_text('  "/dev/shm/other/**" rwk,\n')
    assert check().status == FAIL
    qemu_conf.write_text('security_driver = "none"\n')
    assert check().status == OK and "none" in check().detail
    qemu_conf.write_text('security_driver = [ "selinux", "apparmor" ]\n')
    assert check().status == FAIL


def test_the_newest_failed_template_says_why_guests_cold_boot(cfg, db):
    conf = on(cfg, "/dev/shm/appliance-templates")
    assert doctor.check_template_failures(conf).status == OK
    GuestTemplate.create(key="b2", profile="minimal", image_hash="h", domain_type="qemu", vcpus=1, memory_mb=512,
                         disk_gb=4, qemu_version="7.2.0", state="failed",
                         error="Permission denied: /dev/shm/appliance-templates/b2/ram")
    failed = doctor.check_template_failures(conf)
    assert failed.status == WARN and "Permission denied" in failed.detail and "cold-boot" in failed.detail


def test_with_templates_off_the_doctor_only_says_guests_cold_boot(cfg, db):
    assert "cold-boot" in doctor.check_templates(cfg).detail
    checks = doctor.run_all(cfg, hv=None, manager=None)
    names = [c.name for c in checks]
    assert "guest templates" in names and "template AppArmor" not in names
    with_templates = doctor.run_all(on(cfg, "/nonexistent/tpl"), hv=None, manager=None)
    assert {"template dir access", "template AppArmor", "template builds"} <= {c.name for c in with_templates}
