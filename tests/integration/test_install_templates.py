"""scripts/install-templates (run by scripts/install): the template dir for qemu now and at every boot,
and AppArmor's rule for it in a marked block that a re-install replaces. Runs the real script as root
with every host path pointed into a scratch directory (the host's /etc and /dev/shm stay untouched)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from appliance.doctor import apparmor_allows

from helpers import ROOT, need_root

pytestmark = pytest.mark.root
QEMU_USER = "libvirt-qemu"


@pytest.fixture
def scratch(tmp_path):
    need_root()
    try:
        pwd.getpwnam(QEMU_USER)
    except KeyError:
        pytest.skip("no libvirt-qemu user (scripts/setup installs libvirt)")
    apparmor = tmp_path / "apparmor.d"
    (apparmor / "abstractions").mkdir(parents=True)
    (apparmor / "abstractions" / "libvirt-qemu").write_text("  #include <local/abstractions/libvirt-qemu>\n")
    (apparmor / "local" / "abstractions").mkdir(parents=True)
    (apparmor / "local" / "abstractions" / "libvirt-qemu").write_text("# Site-specific additions\n/srv/isos/** r,\n")
    return tmp_path


def install(scratch: Path, template_dir: Path | str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "APPLIANCE_TMPFILES_FILE": str(scratch / "tmpfiles.d" / "appliance.conf"),
           "APPLIANCE_APPARMOR_DIR": str(scratch / "apparmor.d")}
    return subprocess.run([str(ROOT / "scripts" / "install-templates"), str(template_dir)], env=env,
                          capture_output=True, text=True, timeout=60)


def rules(scratch: Path) -> str:
    return (scratch / "apparmor.d" / "local" / "abstractions" / "libvirt-qemu").read_text()


def assert_qemu_dir(path: Path) -> None:
    st = path.stat()
    assert pwd.getpwuid(st.st_uid).pw_name == QEMU_USER and stat.S_IMODE(st.st_mode) == 0o711


def test_the_dir_is_qemus_and_apparmor_lets_qemu_in(scratch):
    where = scratch / "shm" / "appliance-templates"
    run = install(scratch, where)
    assert run.returncode == 0, run.stderr
    assert_qemu_dir(where)
    text = rules(scratch)
    assert text.startswith("# Site-specific additions\n/srv/isos/** r,\n"), "the admin's own rules stay"
    assert f'"{where}/**" rwk,' in text and apparmor_allows(text, str(where)), "what appliance doctor looks for"
    assert "no reload needed" in run.stderr
    assert (scratch / "tmpfiles.d" / "appliance.conf").read_text().splitlines()[-1] == f"d {where} 0711 {QEMU_USER} - -"


def test_a_reinstall_keeps_one_block_and_follows_a_new_template_dir(scratch):
    first, second = scratch / "shm" / "a", scratch / "shm" / "b"
    assert install(scratch, first).returncode == 0
    once = rules(scratch)
    assert install(scratch, first).returncode == 0
    assert rules(scratch) == once, "idempotent"
    assert install(scratch, str(second) + "/").returncode == 0
    text = rules(scratch)
    assert text.count("# BEGIN appliance") == 1 and text.count("# END appliance") == 1
    assert apparmor_allows(text, str(second)) and not apparmor_allows(text, str(first))
    assert "/srv/isos/** r," in text


def test_at_boot_systemd_tmpfiles_makes_the_dir_again(scratch):
    if shutil.which("systemd-tmpfiles") is None:
        pytest.skip("systemd-tmpfiles missing")
    where = scratch / "shm" / "appliance-templates"
    assert install(scratch, where).returncode == 0
    where.rmdir()  # what a reboot does to /dev/shm
    boot = subprocess.run(["systemd-tmpfiles", "--create", str(scratch / "tmpfiles.d" / "appliance.conf")],
                          capture_output=True, text=True, timeout=60)
    assert boot.returncode == 0, boot.stderr
    assert_qemu_dir(where)


def test_without_libvirts_apparmor_files_no_rule_is_written(scratch):
    shutil.rmtree(scratch / "apparmor.d")
    run = install(scratch, scratch / "shm" / "tpl")
    assert run.returncode == 0 and "no rule needed" in run.stderr
    assert not (scratch / "apparmor.d").exists()


@pytest.mark.parametrize("bad", ["relative/dir", "/dev/shm/with space", '/dev/shm/q"uote'])
def test_a_template_dir_that_cannot_be_a_rule_is_refused(scratch, bad):
    run = install(scratch, bad)
    assert run.returncode == 1 and "error: template_dir" in run.stderr and "hint:" in run.stderr
    assert "appliance" not in rules(scratch).lower() and not (scratch / "tmpfiles.d").exists()


def test_apparmor_parses_the_rule(scratch):
    """Where AppArmor's parser is installed: a guest-like profile including the local file compiles."""
    parser = shutil.which("apparmor_parser")
    if parser is None:
        pytest.skip("apparmor_parser missing (apt-get install apparmor)")
    where = scratch / "shm" / "appliance-templates"
    assert install(scratch, where).returncode == 0
    profile = scratch / "profile"
    profile.write_text(f"profile aplh12b-test {{\n  #include \"{scratch}/apparmor.d/local/abstractions/libvirt-qemu\"\n}}\n")
    parsed = subprocess.run([parser, "--skip-kernel-load", "--skip-cache", "-I", str(scratch / "apparmor.d"),
                             str(profile)], capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0, parsed.stderr
