"""`appliance user first-admin` through the CLI's entry point: one admin for an empty appliance,
never a second one, and the console's login page saying how to get that first account."""

from __future__ import annotations

import re

import pytest
from werkzeug.security import check_password_hash

from appliance.accounts.models import ApiToken, User
from appliance.accounts.service import create_first_admin
from appliance.cli.main import main
from appliance.services import Services
from webui import create_app


@pytest.fixture
def appliance_env(db, cfg, monkeypatch):
    """The CLI reads its configuration from the environment, as on a server: the test's state dir."""
    monkeypatch.setenv("APPLIANCE_CONFIG", str(cfg.state_dir / "no-such-file.toml"))
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(cfg.state_dir))
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", cfg.database_url)  # SQLite there, or the suite's PostgreSQL
    return cfg


def test_first_admin_is_created_once_with_a_one_time_password(appliance_env, capsys):
    assert main(["user", "first-admin"]) == 0
    out = capsys.readouterr().out
    password = re.search(r"^Password: +(\S+)", out, re.MULTILINE).group(1)
    token = re.search(r"^API token: +(apl_\S+)", out, re.MULTILINE).group(1)
    assert "First admin: admin" in out and "shown once" in out

    admin = User.get(User.username == "admin")
    assert admin.is_admin and check_password_hash(admin.password_hash, password)
    assert password not in admin.password_hash
    assert ApiToken.user_for(token).id == admin.id

    # a second run (scripts/run at every start, scripts/install on upgrade) adds nobody, says so,
    # and prints no secret
    assert main(["user", "first-admin", "other"]) == 0
    out = capsys.readouterr().out
    assert "users already: no first admin created" in out
    assert "Password" not in out and "apl_" not in out
    assert [u.username for u in User.select()] == ["admin"]
    assert check_password_hash(User.get(User.username == "admin").password_hash, password)


def test_no_first_admin_once_anyone_has_an_account(appliance_env, capsys):
    User.create(username="alice", is_admin=False)
    assert create_first_admin() is None
    assert main(["user", "first-admin"]) == 0
    assert "no first admin created" in capsys.readouterr().out
    assert [u.username for u in User.select()] == ["alice"]


def test_first_admin_name_is_checked(appliance_env, capsys):
    assert main(["user", "first-admin", "bad name"]) == 2  # usage
    err = capsys.readouterr().err
    assert "error: 'bad name' is not a user name" in err and "hint:" in err
    assert User.select().count() == 0


def test_login_page_says_how_to_get_the_first_account(appliance_env):
    client = create_app(Services.build(appliance_env), test_config={"TESTING": True}).test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "This appliance has no account yet" in page
    assert "<code>appliance user first-admin</code>" in page

    create_first_admin()
    page = client.get("/login").get_data(as_text=True)
    assert "no account yet" not in page and "appliance user first-admin" not in page
    assert "No account? Ask an admin to add you" in page


def test_scripts_run_starts_the_daemon_with_the_first_admin_step():
    """scripts/run's last line is a command the real parser takes, with the first-admin step on."""
    from appliance.cli.main import build_parser

    from helpers import ROOT

    last = (ROOT / "scripts" / "run").read_text().strip().splitlines()[-1].split()
    assert last[:2] == ["exec", ".venv/bin/appliance"]
    args = build_parser().parse_args(last[2:])
    assert args.command == "serve" and args.first_admin is True
