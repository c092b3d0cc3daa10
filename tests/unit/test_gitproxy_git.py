"""The git wrapper's environment and credential handling, and repository descriptions."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from appliance.gitproxy.git import Credential, Git, describe_upstream_failure
from appliance.gitproxy.repos import BadRepoSpec, RepoSpec, url_kind, valid_branch_name

SECRET = "ghp_realsecret0123456789"


def fake_git(tmp_path: Path) -> Path:
    """A stand-in `git` that records its argv and environment, and asks askpass like git does."""
    script = tmp_path / "fake-git"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {tmp_path}/argv\n'
        f"env > {tmp_path}/env\n"
        'if [ -n "$GIT_ASKPASS" ]; then\n'
        "  \"$GIT_ASKPASS\" \"Username for 'https://git.example.com': \" > " f"{tmp_path}/user\n"
        "  \"$GIT_ASKPASS\" \"Password for 'https://x-access-token@git.example.com': \" > " f"{tmp_path}/pass\n"
        "fi\n"
    )
    script.chmod(0o755)
    return script


def test_environment_is_built_from_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_DIR", "/somewhere/else")
    monkeypatch.setenv("GIT_ASKPASS", "/usr/bin/leaky-helper")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'credential.helper'='store'")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    env = Git(tmp_path).base_env()
    assert "GIT_DIR" not in env and "GIT_CONFIG_PARAMETERS" not in env and "SSH_AUTH_SOCK" not in env
    assert env["GIT_ASKPASS"] == "/bin/false" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_ALLOW_PROTOCOL"] == "file:http:https:ssh"
    assert Path(env["HOME"]).is_relative_to(tmp_path)


def test_token_reaches_git_only_through_askpass_never_argv(tmp_path):
    git = Git(tmp_path / "state", git_bin=str(fake_git(tmp_path)))
    cred = Credential("token", SECRET)
    res = git.run(["fetch", "https://git.example.com/acme/api.git"], credential=cred,
                  url="https://git.example.com/acme/api.git")
    assert res.ok
    argv = (tmp_path / "argv").read_text()
    assert SECRET not in argv and "https://git.example.com/acme/api.git" in argv
    assert (tmp_path / "user").read_text() == "x-access-token\n"
    assert (tmp_path / "pass").read_text() == SECRET + "\n"
    askpass = git.askpass
    assert SECRET not in askpass.read_text()
    assert stat.S_IMODE(askpass.stat().st_mode) == 0o700
    assert not any(SECRET.encode() in f.read_bytes() for f in (tmp_path / "state").rglob("*") if f.is_file())


def test_askpass_answers_only_for_the_expected_origin(tmp_path):
    git = Git(tmp_path)
    with git.credential_env("https://git.example.com:8443/acme/api.git", Credential("token", SECRET)) as extra:
        env = git.base_env(extra)

    def ask(prompt):
        return subprocess.run([env["GIT_ASKPASS"], prompt], env=env, capture_output=True, text=True)

    assert ask("Password for 'https://x-access-token@git.example.com:8443': ").stdout == SECRET + "\n"
    assert ask("Username for 'https://git.example.com:8443': ").stdout == "x-access-token\n"
    for elsewhere in ("Password for 'https://x-access-token@evil.example': ",
                      "Password for 'http://x-access-token@git.example.com:8443': ",  # downgraded
                      "Password for 'https://git.example.com:8443.evil.example': ",
                      "Password for 'https://git.example.com': "):
        p = ask(elsewhere)
        assert p.returncode != 0 and SECRET not in p.stdout


def test_ssh_key_is_a_private_file_only_during_the_call(tmp_path):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAkeymaterial1234567890\n-----END OPENSSH PRIVATE KEY-----\n"
    git = Git(tmp_path)
    with git.credential_env("ssh://git@git.example.com/acme/api.git", Credential("ssh_key", key)) as extra:
        cmd = extra["GIT_SSH_COMMAND"]
        path = Path(cmd.split(" -i ")[1].strip("'"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().startswith("-----BEGIN")
        assert "AAAAkeymaterial" not in cmd and "IdentitiesOnly=yes" in cmd and "BatchMode=yes" in cmd
        assert "StrictHostKeyChecking=accept-new" in cmd
    assert not path.exists() and not path.parent.exists()


def test_redaction_and_failure_descriptions():
    cred = Credential("token", SECRET)
    assert cred.redact(f"fatal: {SECRET} and more") == "fatal: *** and more"
    url = "https://git.corp.example/acme/api.git"
    msg = describe_upstream_failure(
        f"fatal: unable to access '{url}/': Failed to connect to git.corp.example port 443: Connection refused",
        url, "acme/api")
    assert msg == "upstream of acme/api unreachable: the connection was refused"
    assert describe_upstream_failure("fatal: Authentication failed for 'x'", url, "r") == \
        "upstream of r refused the appliance's credential"
    odd = describe_upstream_failure(f"fatal: something odd at {url} on git.corp.example", url, "r")
    assert "git.corp.example" not in odd and odd.startswith("upstream of r failed")


def test_repo_spec_validation():
    RepoSpec("acme/api", "https://github.com/acme/api.git", "token", SECRET)
    RepoSpec("local", "/srv/git/x.git")
    RepoSpec("deploy", "git@github.com:acme/api.git", "ssh_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n...")
    assert SECRET not in repr(RepoSpec("acme/api", "https://github.com/acme/api.git", "token", SECRET))
    with pytest.raises(BadRepoSpec, match="carries credentials"):
        RepoSpec("a", f"https://x:{SECRET}@github.com/a.git", "token", SECRET)
    with pytest.raises(BadRepoSpec, match="https"):
        RepoSpec("a", "git@github.com:a.git", "token", SECRET)
    with pytest.raises(BadRepoSpec):
        RepoSpec("a", "https://github.com/a.git", "ssh_key", "not a key")
    for key in ("../x", "a/../b", "x.git", "", "a//b", "a b"):
        with pytest.raises(BadRepoSpec):
            RepoSpec(key, "/srv/x.git")
    with pytest.raises(BadRepoSpec):
        RepoSpec("a", "ext::sh -c evil")
    assert [url_kind(u) for u in ("https://h/x", "ssh://h/x", "git@h:x", "/x", "file:///x", "ftp://x")] == \
        ["http", "ssh", "ssh", "local", "local", "unknown"]
    assert valid_branch_name("claude/fix-1") and not valid_branch_name("claude/.hidden")


def test_real_git_runs_with_hooks_disabled(tmp_path):
    """A hook in a repository the host works on never runs (core.hooksPath=/dev/null)."""
    git = Git(tmp_path / "state")
    repo = tmp_path / "r.git"
    assert git.run(["init", "--bare", "-q", str(repo)]).ok
    marker = tmp_path / "hook-ran"
    hook = repo / "hooks" / "reference-transaction"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    assert git.run(["--git-dir", str(repo), "symbolic-ref", "HEAD", "refs/heads/x"]).ok
    blob = git.run(["--git-dir", str(repo), "hash-object", "-w", "--stdin"], input=b"x").stdout.strip()
    tree = git.run(["--git-dir", str(repo), "mktree"], input=f"100644 blob {blob}\tf\n".encode()).stdout.strip()
    commit = git.run(["--git-dir", str(repo), "commit-tree", tree, "-m", "m"],
                     env={"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
                          "GIT_COMMITTER_EMAIL": "a@b"}).stdout.strip()
    assert git.run(["--git-dir", str(repo), "update-ref", "refs/heads/x", commit]).ok
    assert not marker.exists()
