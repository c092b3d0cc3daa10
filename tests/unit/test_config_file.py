"""Writing settings into the config file (what `appliance worker --join` records): a line edit that
keeps the file's other settings and comments, creates a new file 0600, and leaves a file it cannot
edit safely untouched."""

import os
import stat
import tomllib

import pytest

from appliance_base.config_file import update_settings
from appliance_base.errors import ConfigError


def test_a_new_file_is_private_and_reads_back(tmp_path):
    path = tmp_path / "etc" / "appliance.toml"
    update_settings(path, {"database_url": 'postgresql://a:p"w@db/x', "cluster_mode": "on", "host_id": "w1"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tomllib.loads(path.read_text()) == {"database": {"database_url": 'postgresql://a:p"w@db/x'},
                                                "cluster": {"cluster_mode": "on", "host_id": "w1"}}


def test_an_existing_file_keeps_its_lines_and_loses_access_for_others(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text("# mine\n[cluster]\nhost_id = \"old\"  # named by hand\nhost_capacity = 4\n\n"
                    "[network]\nbridge = \"br9\"\n")
    os.chmod(path, 0o644)
    update_settings(path, {"host_id": "w2", "cluster_mode": "on", "database_url": "postgresql://db/x"})
    text = path.read_text()
    assert text.startswith("# mine\n") and 'bridge = "br9"' in text
    assert tomllib.loads(text)["cluster"] == {"host_id": "w2", "cluster_mode": "on", "host_capacity": 4}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_file_it_cannot_edit_safely_is_left_as_it_was(tmp_path):
    path = tmp_path / "appliance.toml"
    original = '[cluster]\nhost_id = """w\nhost_id = "x"\n"""\n'
    path.write_text(original)
    with pytest.raises(ConfigError, match="the file is unchanged") as e:
        update_settings(path, {"host_id": "w3"})
    assert "host_id" in e.value.hint and path.read_text() == original
    assert [p.name for p in tmp_path.iterdir()] == ["appliance.toml"]
