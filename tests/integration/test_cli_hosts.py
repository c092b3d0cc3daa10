"""`appliance host list|drain|undrain` on the shared PostgreSQL."""

from __future__ import annotations

from appliance.cli.main import main
from appliance.cluster.models import Host, TurnAttempt
from appliance.db import open_database
from appliance.sessions.models import Turn


def test_an_admin_sees_hosts_and_drains_one(tmp_path, pg_url, monkeypatch, capsys):
    monkeypatch.setenv("APPLIANCE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", pg_url)
    open_database(pg_url)
    Host.create(id="h16h1", capacity=3, version="0.1.0", address="10.0.0.7")
    Host.create(id="h16h2", capacity=2)
    from appliance.accounts.models import User
    from appliance.repos.models import Repository
    from appliance.sessions.models import Session

    session = Session.create(owner=User.create(username="erin"), repository=Repository.create(name="a/b", url="/x"),
                             base_branch="main", work_branch="w")
    TurnAttempt.create(turn=Turn.create(session=session, number=1, message="m"), host="h16h1")

    assert main(["host", "drain", "h16h1"]) == 0
    assert Host.get_by_id("h16h1").draining and not Host.get_by_id("h16h2").draining
    capsys.readouterr()
    assert main(["host", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["h16h1", "1/3", "running", "draining,"] and "10.0.0.7" in lines[0]
    assert lines[1].split()[:4] == ["h16h2", "0/2", "running", "alive"]
    assert main(["host", "undrain", "h16h1"]) == 0
    assert not Host.get_by_id("h16h1").draining


def test_draining_an_unknown_host_says_how_to_find_them(tmp_path, pg_url, monkeypatch, capsys):
    monkeypatch.setenv("APPLIANCE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", pg_url)
    assert main(["host", "drain", "nope"]) != 0
    err = capsys.readouterr().err
    assert "no worker host 'nope'" in err and "appliance host list" in err
