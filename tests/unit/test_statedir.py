"""The state dir: qemu passes through to its guests' files; nobody else reads the rest."""

import os
import stat

from appliance import statedir
from appliance_base.db import connect_url


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_state_dir_is_traversable_and_the_rest_private(tmp_path):
    state = tmp_path / "state"
    for name in ("sandboxes", "images", "probe", "mirrors", "transcripts"):
        (state / name).mkdir(parents=True)
        os.chmod(state / name, 0o755)
    (state / "instance-id").write_text("x")
    os.chmod(state / "instance-id", 0o644)

    tightened = statedir.protect(state)

    assert mode(state) == 0o711
    assert {mode(state / n) for n in ("sandboxes", "images", "probe")} == {0o755}, "qemu's ways in stay open"
    assert mode(state / "mirrors") == mode(state / "transcripts") == 0o700
    assert mode(state / "instance-id") == 0o600
    assert sorted(tightened) == ["instance-id", "mirrors", "transcripts"]
    assert statedir.protect(state) == [], "a second pass has nothing left to do"


def test_the_sqlite_file_is_private_from_its_first_byte(tmp_path):
    db = connect_url(f"sqlite:///{tmp_path / 'appliance.db'}")
    db.connect()
    db.execute_sql("create table t (x)")
    db.close()
    assert mode(tmp_path / "appliance.db") == 0o600
    os.chmod(tmp_path / "appliance.db", 0o644)  # an older install's file
    connect_url(f"sqlite:///{tmp_path / 'appliance.db'}")
    assert mode(tmp_path / "appliance.db") == 0o600
