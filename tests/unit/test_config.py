from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance_base import config


def load(tmp_path, toml: str | None = None, **env):
    path = tmp_path / "appliance.toml"
    if toml is not None:
        path.write_text(toml)
    return config.load(env={"APPLIANCE_CONFIG": str(path), **env})


def test_defaults_when_nothing_is_given(tmp_path):
    cfg = load(tmp_path)
    assert cfg.state_dir == Path("/var/lib/appliance")
    assert cfg.image_dir == Path("/var/lib/appliance/images")
    assert cfg.database_url == "sqlite:////var/lib/appliance/appliance.db"
    assert cfg.accel == "auto"
    assert cfg.source == ("defaults",)


def test_file_overrides_defaults_and_environment_overrides_file(tmp_path):
    toml = '[paths]\nstate_dir = "/srv/appl"\n[libvirt]\naccel = "tcg"\n[sandbox]\nmemory_mb = 2048\n'
    cfg = load(tmp_path, toml)
    assert (cfg.state_dir, cfg.accel, cfg.memory_mb) == (Path("/srv/appl"), "tcg", 2048)
    assert cfg.image_dir == Path("/srv/appl/images"), "derived paths follow the state dir"
    cfg = load(tmp_path, toml, APPLIANCE_ACCEL="kvm", APPLIANCE_MEMORY_MB="512")
    assert (cfg.accel, cfg.memory_mb) == ("kvm", 512)
    assert cfg.source == ("defaults", str(tmp_path / "appliance.toml"), "APPLIANCE_ACCEL", "APPLIANCE_MEMORY_MB")


def test_overrides_win_over_everything(tmp_path):
    cfg = config.load(env={"APPLIANCE_CONFIG": str(tmp_path / "x.toml"), "APPLIANCE_VCPUS": "4"}, overrides={"vcpus": 1})
    assert cfg.vcpus == 1


@pytest.mark.parametrize("toml,needle", [
    ("[libvirt\naccel=", "not valid TOML"),
    ("[nope]\nx = 1\n", "unknown section [nope]"),
    ("[libvirt]\nacel = 'tcg'\n", "unknown setting 'acel'"),
    ("[libvirt]\naccel = 'fast'\n", "accel must be one of"),
    ("[sandbox]\nmemory_mb = 'lots'\n", "must be a int"),
    ("[network]\nsubnet = '10.0.0.0/30'\n", "too small"),
    ("[network]\nsubnet = 'banana'\n", "is not an IPv4 network"),
    ("[sandbox]\nvcpus = 0\n", "vcpus must be positive"),
    ("[sandbox]\nwarm_pool = 'big'\n", "warm_pool must be"),
    ("[sandbox]\nwarm_pool = -1\n", "warm_pool must be"),
])
def test_bad_files_say_what_is_wrong(tmp_path, toml, needle):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, toml)
    assert needle in e.value.message


def test_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, APPLIANCE_LISTEN_PORT="eighty")
    assert "APPLIANCE_LISTEN_PORT" in e.value.message


def test_bridge_address_is_first_host(tmp_path):
    cfg = load(tmp_path, APPLIANCE_SUBNET="10.9.8.0/24")
    assert str(cfg.bridge_address) == "10.9.8.1"


def test_warm_pool_size_follows_templates_and_memory(tmp_path):
    assert load(tmp_path, "[sandbox]\nwarm_pool = 3\n").warm_pool_size(100_000) == 0, "no templates: no pool"
    on = '[sandbox]\nguest_templates = "on"\nmemory_mb = 1024\n'
    assert load(tmp_path, on + "warm_pool = 3\n").warm_pool_size(100) == 3, "a number is taken as it is"
    assert load(tmp_path, on + "warm_pool = 0\n").warm_pool_size(100_000) == 0
    auto = load(tmp_path, on)
    assert [auto.warm_pool_size(mb) for mb in (3000, 8192, 12288, 100_000)] == [0, 2, 3, 4]
