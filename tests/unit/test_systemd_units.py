"""systemd/*.service and *.timer pass `systemd-analyze verify` with no warning (unknown keys, bad values and
missing executables are all reported). The unit's /opt/appliance is rewritten to a temp dir holding
an executable stub, as scripts/install rewrites it to the real install path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT

UNITS = sorted((ROOT / "systemd").glob("*.service")) + sorted((ROOT / "systemd").glob("*.timer"))


def verify(unit_text: str, tmp_path: Path, name: str = "appliance.service") -> subprocess.CompletedProcess:
    prefix = tmp_path / "opt"
    stub = prefix / ".venv" / "bin" / "appliance"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    for sibling in UNITS:  # a timer is verified with the service it starts beside it
        (tmp_path / sibling.name).write_text(sibling.read_text().replace("/opt/appliance", str(prefix)))
    unit = tmp_path / name
    unit.write_text(unit_text.replace("/opt/appliance", str(prefix)))
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def _need_systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze missing (apt-get install systemd; scripts/setup installs it)")


def test_there_is_a_daemon_unit():
    assert ROOT / "systemd" / "appliance.service" in UNITS


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies_clean(unit, tmp_path):
    result = verify(unit.read_text(), tmp_path, unit.name)
    assert result.returncode == 0 and result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr


def test_the_check_catches_mistakes(tmp_path):
    text = (ROOT / "systemd" / "appliance.service").read_text().replace("[Service]\n", "[Service]\nRestartt=always\n")
    assert "Unknown key" in verify(text, tmp_path).stderr


def test_unit_orders_after_libvirt_and_keeps_state_writable():
    text = (ROOT / "systemd" / "appliance.service").read_text()
    assert "After=network-online.target libvirtd.service" in text
    assert "ReadWritePaths=/var/lib/appliance /run/libvirt" in text
    assert "ProtectSystem=full" in text and "NoNewPrivileges=yes" in text


def test_config_template_names_every_setting_and_loads_uncommented(tmp_path):
    import re

    from appliance_base import config

    text = (ROOT / "systemd" / "appliance.toml.example").read_text()
    for section, values in config.DEFAULTS.items():
        assert f"[{section}]" in text
        for key in values:
            assert f"# {key} = " in text, key
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.M)
    path = tmp_path / "appliance.toml"
    path.write_text(uncommented)
    cfg = config.load(env={"APPLIANCE_CONFIG": str(path)})
    assert str(path) in cfg.source and cfg.accel == "auto" and cfg.log_format == "text"


def test_a_daily_backup_timer_starts_the_backup_service():
    timer = (ROOT / "systemd" / "appliance-backup.timer").read_text()
    service = (ROOT / "systemd" / "appliance-backup.service").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer and "WantedBy=timers.target" in timer
    assert "Type=oneshot" in service and "/opt/appliance/.venv/bin/appliance backup " in service


def test_a_worker_host_unit_runs_appliance_worker():
    text = (ROOT / "systemd" / "appliance-worker.service").read_text()
    assert "ExecStart=/opt/appliance/.venv/bin/appliance worker\n" in text
    assert "After=network-online.target libvirtd.service" in text
    assert "ReadWritePaths=/var/lib/appliance /run/libvirt" in text


def install_units(role: str, tmp_path: Path, state_dir: str = "/var/lib/appliance") -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "APPLIANCE_PREFIX": "/srv/appl", "APPLIANCE_ETC": "/srv/etc",
           "APPLIANCE_UNIT_DIR": str(tmp_path / "units"), "APPLIANCE_STATE_DIR": state_dir}
    return subprocess.run([str(ROOT / "scripts" / "install-units"), role], env=env, capture_output=True, text=True,
                          timeout=60)


def test_install_writes_the_worker_unit_only_when_asked(tmp_path):
    """scripts/install writes its units with scripts/install-units: control by default,
    APPLIANCE_ROLE=worker for a worker host."""
    assert install_units("control", tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "appliance-backup.service", "appliance-backup.timer", "appliance.service"]

    worker_dir = tmp_path / "w"
    assert install_units("worker", worker_dir, state_dir="/data/appl").returncode == 0
    [unit] = list((worker_dir / "units").iterdir())
    text = unit.read_text()
    assert unit.name == "appliance-worker.service"
    assert "ExecStart=/srv/appl/.venv/bin/appliance worker\n" in text
    assert "Environment=APPLIANCE_CONFIG=/srv/etc/appliance.toml" in text
    assert "ReadWritePaths=/data/appl /run/libvirt" in text and "/opt/appliance" not in text

    wrong = install_units("both", tmp_path / "x")
    assert wrong.returncode == 2 and "control|worker" in wrong.stderr and not (tmp_path / "x").exists()

