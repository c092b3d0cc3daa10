"""`appliance repo add|list|remove` through the CLI's entry point, on a real SQLite database: the
console's rules, credentials from stdin and never shown back, and no removal while sessions use it."""

from __future__ import annotations

import io
import json

import pytest

from appliance.accounts.models import Team, User
from appliance.cli.main import main
from appliance.repos.models import Repository
from appliance.sessions.models import Session, Status
from appliance.sessions.service import NewSession, SessionService


@pytest.fixture
def appliance_env(db, cfg, monkeypatch):
    """The CLI reads its configuration from the environment, as on a server: the test's state dir."""
    monkeypatch.setenv("APPLIANCE_CONFIG", str(cfg.state_dir / "no-such-file.toml"))
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(cfg.state_dir))
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", cfg.database_url)  # SQLite there, or the suite's PostgreSQL
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    return cfg


def cli(capsys, monkeypatch, *argv, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_add_list_and_remove(appliance_env, capsys, monkeypatch):
    Team.create(name="core")
    rc, out, _ = cli(capsys, monkeypatch, "repo", "add", "acme/api", "https://git.example/acme/api.git",
                     "--branch", "trunk", "--credential", "token", "--forge", "github", "--forge-project", "acme/api",
                     "--team", "core", stdin="ghp_SECRET_TOKEN\n")
    assert rc == 0 and "added repository acme/api" in out
    repo = Repository.get(Repository.name == "acme/api")
    assert (repo.default_branch, repo.credential_kind, repo.credential_secret, repo.forge, repo.team.name) == (
        "trunk", "token", "ghp_SECRET_TOKEN", "github", "core")
    assert repo.created_by is None
    assert cli(capsys, monkeypatch, "repo", "add", "tools", "/srv/git/tools.git")[0] == 0

    rc, out, _ = cli(capsys, monkeypatch, "repo", "list")
    assert rc == 0 and "ghp_SECRET" not in out
    lines = out.splitlines()
    assert lines[0].startswith("acme/api  https://git.example/acme/api.git  branch trunk  forge github acme/api")
    assert "credential token" in lines[0] and "team core" in lines[0]
    assert lines[1].startswith("tools  /srv/git/tools.git") and "team (everyone)" in lines[1]
    rc, out, _ = cli(capsys, monkeypatch, "repo", "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows] == ["acme/api", "tools"] and "ghp_SECRET" not in out

    rc, out, _ = cli(capsys, monkeypatch, "repo", "remove", "tools")
    assert rc == 0 and "removed repository tools" in out
    assert [r.name for r in Repository.select()] == ["acme/api"]


def test_bad_input_is_refused_with_a_hint_and_changes_nothing(appliance_env, capsys, monkeypatch):
    cases = [
        (("repo", "add", "bad name", "https://x/y.git"), "is not a repository name"),
        (("repo", "add", "a/b", "ftp://x/y.git"), "is not a git remote"),
        (("repo", "add", "a/b", "https://x/y.git", "--forge", "bitbucket"), "unknown forge"),
        (("repo", "add", "a/b", "https://x/y.git", "--credential", "password"), "unknown credential kind"),
        (("repo", "add", "a/b", "https://x/y.git", "--credential", "token"), "nothing on stdin"),
        (("repo", "add", "a/b", "https://x/y.git", "--team", "ghosts"), "unknown team"),
        (("repo", "remove", "nope"), "no repository 'nope'"),
    ]
    for argv, message in cases:
        rc, _, err = cli(capsys, monkeypatch, *argv)
        assert rc != 0 and message in err, (argv, err)
        assert "error:" in err
    assert Repository.select().count() == 0
    rc, out, _ = cli(capsys, monkeypatch, "repo", "list")
    assert rc == 0 and "appliance repo add" in out
    assert cli(capsys, monkeypatch, "repo", "add", "a/b", "https://x/y.git")[0] == 0
    rc, _, err = cli(capsys, monkeypatch, "repo", "add", "a/b", "https://x/other.git")
    assert rc != 0 and "already exists" in err
    assert Repository.get(Repository.name == "a/b").url == "https://x/y.git"


def test_remove_is_refused_while_sessions_use_the_repository(appliance_env, capsys, monkeypatch):
    alice = User.create(username="alice")
    assert cli(capsys, monkeypatch, "repo", "add", "acme/api", "/srv/git/api.git")[0] == 0
    service = SessionService(appliance_env)
    running = service.create(alice, NewSession("acme/api", "fix the bug", agent="command"))
    Session.update(status=Status.RUNNING).where(Session.id == running.id).execute()
    done = service.create(alice, NewSession("acme/api", "add a test", agent="command"))
    Session.update(status=Status.COMPLETED).where(Session.id == done.id).execute()

    rc, out, err = cli(capsys, monkeypatch, "repo", "remove", "acme/api")
    assert rc != 0 and out == ""
    assert "repository 'acme/api' is used by 2 session(s), 1 unfinished" in err
    assert f"{running.id} (running)" in err and done.id not in err  # the unfinished ones are named
    assert "hint:" in err and "appliance cancel SESSION" in err
    assert Repository.select().where(Repository.name == "acme/api").exists()

    # once none is unfinished, the finished ones still hold it (their history), and say so
    Session.update(status=Status.CANCELLED).where(Session.id == running.id).execute()
    rc, _, err = cli(capsys, monkeypatch, "repo", "remove", "acme/api")
    assert rc != 0 and "0 unfinished" in err and done.id in err
    assert Repository.select().where(Repository.name == "acme/api").exists()
    assert Session.select().count() == 2


def test_the_database_refuses_too(appliance_env, capsys, monkeypatch):
    """delete_repository stands on its own: a session created between the check and the delete."""
    from appliance.errors import Invalid
    from appliance.repos.service import delete_repository

    alice = User.create(username="alice")
    assert cli(capsys, monkeypatch, "repo", "add", "acme/api", "/srv/git/api.git")[0] == 0
    SessionService(appliance_env).create(alice, NewSession("acme/api", "fix", agent="command"))
    with pytest.raises(Invalid, match="is used by sessions"):
        delete_repository(Repository.get(Repository.name == "acme/api"))
    assert Repository.select().count() == 1
