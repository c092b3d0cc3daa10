"""`appliance user add` / `appliance user token` (the first admin, before the console has one)."""

from __future__ import annotations

import argparse
import io

import pytest
from werkzeug.security import check_password_hash

from appliance.accounts.models import ApiToken, User
from appliance.cli import user_cmd
from appliance.errors import Invalid, NotFound


class Ctx:
    def __init__(self, db):
        self.db = db


def run(argv, db, monkeypatch, stdin=""):
    parser = argparse.ArgumentParser()
    user_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return args.handler(args, Ctx(db))


def test_add_an_admin_with_a_password_from_stdin(db, monkeypatch, capsys):
    assert run(["user", "add", "root-admin", "--admin", "--password-stdin"], db, monkeypatch, "long enough pw\n") == 0
    u = User.get(User.username == "root-admin")
    assert u.is_admin and check_password_hash(u.password_hash, "long enough pw")
    assert "added admin root-admin" in capsys.readouterr().out
    with pytest.raises(Invalid, match="already exists"):
        run(["user", "add", "root-admin", "--password-stdin"], db, monkeypatch, "long enough pw\n")
    with pytest.raises(Invalid, match="shorter"):
        run(["user", "add", "bob", "--password-stdin"], db, monkeypatch, "short\n")
    with pytest.raises(Invalid, match="not a user name"):
        run(["user", "add", "bad name", "--password-stdin"], db, monkeypatch, "long enough pw\n")


def test_token_is_printed_once_and_works(db, monkeypatch, capsys):
    run(["user", "add", "alice", "--password-stdin"], db, monkeypatch, "long enough pw\n")
    capsys.readouterr()
    assert run(["user", "token", "alice"], db, monkeypatch) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("apl_") and ApiToken.user_for(token).username == "alice"
    with pytest.raises(NotFound):
        run(["user", "token", "ghost"], db, monkeypatch)
