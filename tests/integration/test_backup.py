"""Backup while sessions write events and branches are pushed; restore into a fresh state dir; the
session list and the hosted repositories' branches match, and the copies are whole (git fsck)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import types

import pytest

from appliance import backup as b
from appliance.accounts.models import User
from appliance.cli import backup_cmd
from appliance.errors import Invalid
from appliance.forges.local import create_hosted_repository
from appliance.gitproxy.git import Git
from appliance.repos.models import Repository
from appliance.sessions.models import Session
from appliance.sessions.stream import emit

from helpers import make_config

ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
           GIT_COMMITTER_EMAIL="t@e", GIT_CONFIG_GLOBAL="/dev/null")


def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=ENV).stdout


def sessions_in(db_path):
    con = sqlite3.connect(db_path)
    try:
        return sorted(con.execute("SELECT id, status, work_branch FROM session").fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("form", ["dir", "tar.gz"])
def test_backup_while_running_then_restore(db, cfg, tmp_path, form):
    alice = User.create(username="alice")
    repo_path = create_hosted_repository(cfg.state_dir, "acme/api", {"README.md": "hi\n"})
    repo = Repository.create(name="acme/api", url=str(repo_path), forge="local")
    sessions = [Session.create(owner=alice, repository=repo, base_branch="main", work_branch=f"appliance/w{i}",
                               status="running") for i in range(3)]
    work = tmp_path / "work"
    git("clone", "--quiet", str(repo_path), str(work))
    for s in sessions:
        git("checkout", "--quiet", "-B", s.work_branch, "origin/main", cwd=work)
        (work / "f.txt").write_text(s.id)
        git("add", ".", cwd=work)
        git("commit", "--quiet", "-m", s.id, cwd=work)
        git("push", "--quiet", "origin", s.work_branch, cwd=work)

    stop = threading.Event()

    def busy():  # a running session: events and pushes while the backup is taken
        n = 0
        db.connect(reuse_if_open=True)
        while not stop.is_set():
            emit(sessions[0].id, "log", {"text": f"line {n}"})
            (work / "f.txt").write_text(str(n))
            git("commit", "--quiet", "-am", f"c{n}", cwd=work)
            git("push", "--quiet", "origin", sessions[-1].work_branch, cwd=work)
            n += 1
        db.close()

    writer = threading.Thread(target=busy)
    writer.start()
    dest = tmp_path / ("backup" if form == "dir" else "backup.tar.gz")
    try:
        rc = backup_cmd.backup(types.SimpleNamespace(path=str(dest)), types.SimpleNamespace(config=cfg))
    finally:
        stop.set()
        writer.join()
    assert rc == 0 and dest.exists()

    fresh = make_config(tmp_path / "fresh")
    rc = backup_cmd.restore(types.SimpleNamespace(path=str(dest), force=False), types.SimpleNamespace(config=fresh))
    assert rc == 0
    restored_db = fresh.state_dir / "appliance.db"
    assert sessions_in(restored_db) == sorted((s.id, "running", s.work_branch) for s in sessions)
    restored_repo = b.hosted_root(fresh.state_dir) / "acme" / "api.git"
    git(f"--git-dir={restored_repo}", "fsck", "--connectivity-only", "--no-progress")
    restored = b.refs(restored_repo, Git(tmp_path / "gitstate"))
    for s in sessions:
        assert f"refs/heads/{s.work_branch}" in restored
    live = b.refs(repo_path, Git(tmp_path / "gitstate"))
    for ref in ("refs/heads/main", *(f"refs/heads/{s.work_branch}" for s in sessions[:-1])):
        assert restored[ref] == live[ref]
    assert git(f"--git-dir={restored_repo}", "config", "core.logAllRefUpdates").strip() == "always"

    # a second restore over sessions is refused unless forced
    with pytest.raises(Invalid, match="already holds sessions"):
        b.restore(fresh, dest)
    b.restore(fresh, dest, force=True)


def test_backup_refuses_an_existing_target(db, cfg, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    with pytest.raises(Invalid, match="already exists"):
        b.backup(cfg, tmp_path / "x")
