"""The git proxy end to end: real git clients -> the proxy -> a real upstream (git http-backend).

No root needed: everything listens on 127.0.0.1. Every test ends by checking that the upstream's
credential never appeared in anything a client printed (the `world` fixture collects it all).
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("gitserver")
pytest_plugins = ["gitserver"]

import base64  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

from appliance.gitproxy import GitProxyService, RepoSpec, tokens  # noqa: E402
from appliance.gitproxy.mirror import MirrorStore  # noqa: E402
from appliance.gitproxy.server import GitProxy  # noqa: E402
from appliance.models import Sandbox, SandboxState  # noqa: E402

from gitserver import clean_git_env, run_git  # noqa: E402
from helpers import make_config  # noqa: E402

REPO = "acme/api"
SESSION = "sess-1"
BRANCH = "claude/fix-login"
FILES = {"README.md": "# api\n", "src/app.py": "print('hello')\n"}


class Recorder:
    """WSGI middleware remembering the transfer details of each request."""

    def __init__(self, app):
        self.app, self.seen = app, []

    def __call__(self, environ, start_response):
        self.seen.append({k: environ.get(k, "") for k in (
            "REQUEST_METHOD", "PATH_INFO", "HTTP_CONTENT_ENCODING", "HTTP_TRANSFER_ENCODING", "HTTP_GIT_PROTOCOL")})
        return self.app(environ, start_response)


class World:
    def __init__(self, tmp: Path, upstream, cfg):
        self.tmp, self.upstream, self.cfg = tmp, upstream, cfg
        self.secret = upstream.token
        self.repos: dict[str, RepoSpec] = {}
        self.env = clean_git_env(tmp / "client-home")
        (tmp / "client-home").mkdir()
        self.seen: list[str] = []  # everything clients printed
        self.mirrors = MirrorStore.from_config(cfg)
        self.proxy = GitProxy(self.mirrors, self.repos.get)
        self.recorder = Recorder(self.proxy)
        self.service = GitProxyService(self.recorder, "127.0.0.1", 0).start()
        self.sandbox = Sandbox.create(profile="minimal", image_dir="-", vcpus=1, memory_mb=512, disk_gb=4,
                                      address="127.0.0.1", purpose=SESSION, state=SandboxState.RUNNING)

    def add_repo(self, key=REPO, files=FILES, **kw) -> RepoSpec:
        if files is not None:
            self.upstream.create_repo(key, files)
        kw.setdefault("url", self.upstream.url(key))
        kw.setdefault("credential_kind", "token")
        kw.setdefault("credential", self.secret)
        spec = RepoSpec(key, **kw)
        self.repos[key] = spec
        return spec

    def issue(self, session_id: str, repo_key: str, branch: str) -> str:
        """A token bound to the test's one sandbox: these clients are its guest (127.0.0.1)."""
        return tokens.issue(session_id, repo_key, branch, sandbox_id=self.sandbox.id)

    def url(self, token: str, key=REPO) -> str:
        return self.service.remote_url(token, key)

    def git(self, *args, cwd=None, ok=True):
        p = run_git(list(args), cwd=cwd, env=self.env, check=False)
        self.seen += [p.stdout, p.stderr]
        if ok is not None:
            assert (p.returncode == 0) == ok, f"git {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def clone(self, token: str, name="work", key=REPO, ok=True, *extra):
        dest = self.tmp / name
        p = self.git("clone", *extra, self.url(token, key), str(dest), ok=ok)
        return dest if p.returncode == 0 else p

    def commit(self, repo: Path, files: dict[str, str | bytes], message="agent work") -> str:
        for rel, content in files.items():
            f = repo / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(content if isinstance(content, bytes) else content.encode())
        self.git("add", "-A", cwd=repo)
        self.git("commit", "-q", "-m", message, cwd=repo)
        return self.git("rev-parse", "HEAD", cwd=repo).stdout.strip()

    def http(self, path: str, token: str | None):
        """A raw GET to the proxy: (status, body)."""
        req = urllib.request.Request(f"{self.service.url.rstrip('/')}{path}")
        if token is not None:
            req.add_header("Authorization", "Basic " + base64.b64encode(f"git:{token}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


@pytest.fixture
def world(tmp_path, git_server, db):
    cfg = make_config(tmp_path / "state", git_mirror_refresh_interval=0.0)
    w = World(tmp_path, git_server, cfg)
    try:
        yield w
    finally:
        w.service.stop()
    everything = "".join(w.seen)
    assert w.secret not in everything, "the upstream credential reached a client"


def test_clone_push_work_branch_and_fetch(world):
    world.add_repo()
    token = world.issue(SESSION, REPO, BRANCH)
    work = world.clone(token)
    assert (work / "README.md").read_text() == FILES["README.md"]
    assert world.git("branch", "--show-current", cwd=work).stdout.strip() == "main"

    new = world.commit(work, {"src/app.py": "print('fixed')\n"})
    world.git("checkout", "-q", "-b", BRANCH, cwd=work)
    p = world.git("push", "origin", BRANCH, cwd=work)
    assert "[new branch]" in p.stderr
    assert world.upstream.head(REPO, BRANCH) == new
    assert world.upstream.read_file(REPO, BRANCH, "src/app.py") == "print('fixed')\n"
    assert world.mirrors.head(REPO, BRANCH) == new  # the mirror follows without a refetch

    # An update (fast-forward) of the work branch, then someone else moves main upstream.
    newer = world.commit(work, {"NOTES.md": "more\n"})
    world.git("push", "origin", BRANCH, cwd=work)
    assert world.upstream.head(REPO, BRANCH) == newer
    upstream_main = world.upstream.commit(REPO, "main", {"CHANGELOG": "upstream\n"})
    world.git("fetch", "origin", cwd=work)
    assert world.git("rev-parse", "origin/main", cwd=work).stdout.strip() == upstream_main

    # The upstream only ever saw the host credential (every request it served was authorized).
    served = [r for r in world.upstream.requests if r.authorized]
    assert served and all(r.user == "x-access-token" for r in served)
    assert any(r.get("HTTP_GIT_PROTOCOL") == "version=2" for r in world.recorder.seen)


def test_protocol_v0_clone_and_local_path_upstream(world):
    bare = world.tmp / "local-upstream.git"
    run_git(["init", "--bare", "-q", "-b", "trunk", str(bare)], env=world.env)
    seed = world.tmp / "seed"
    world.git("init", "-q", "-b", "trunk", str(seed))
    world.commit(seed, {"a.txt": "local\n"})
    world.git("push", "-q", str(bare), "trunk", cwd=seed)
    world.add_repo("local-repo", files=None, url=str(bare), credential_kind="none", credential="")
    token = world.issue(SESSION, "local-repo", BRANCH)

    work = world.tmp / "v0"
    world.git("-c", "protocol.version=0", "clone", world.url(token, "local-repo"), str(work))
    assert (work / "a.txt").read_text() == "local\n"
    assert world.git("branch", "--show-current", cwd=work).stdout.strip() == "trunk"  # upstream's HEAD
    new = world.commit(work, {"b.txt": "from the guest\n"})
    world.git("-c", "protocol.version=0", "push", "origin", f"HEAD:{BRANCH}", cwd=work)
    assert run_git(["--git-dir", str(bare), "rev-parse", BRANCH], env=world.env).stdout.strip() == new


def test_pushes_outside_the_work_branch_are_refused_and_upstream_untouched(world):
    world.add_repo()
    token = world.issue(SESSION, REPO, BRANCH)
    work = world.clone(token)
    before = world.upstream.refs(REPO)
    world.commit(work, {"evil.txt": "x\n"})

    p = world.git("push", "origin", "HEAD:main", cwd=work, ok=False)
    assert f"! [remote rejected] HEAD -> main (the appliance only lets this session push refs/heads/{BRANCH})" in p.stderr
    assert f"git push origin HEAD:{BRANCH}" in p.stderr  # the hint the agent can act on
    p = world.git("push", "origin", "HEAD:someone-elses-branch", cwd=work, ok=False)
    assert "[remote rejected]" in p.stderr and f"refs/heads/{BRANCH}" in p.stderr
    world.git("tag", "v9", cwd=work)
    p = world.git("push", "origin", "v9", cwd=work, ok=False)
    assert "[remote rejected] v9 -> v9" in p.stderr
    p = world.git("push", "origin", "HEAD:refs/notes/x", cwd=work, ok=False)
    assert "[remote rejected]" in p.stderr
    assert world.upstream.refs(REPO) == before
    assert world.upstream.receive_pack_posts(REPO) == 0  # nothing refused ever went upstream

    # Deleting is never allowed, not even the work branch.
    world.git("push", "origin", f"HEAD:{BRANCH}", cwd=work)
    p = world.git("push", "origin", "--delete", BRANCH, cwd=work, ok=False)
    assert f"! [remote rejected] {BRANCH} (the appliance does not delete branches" in p.stderr
    p = world.git("push", "origin", "--delete", "main", cwd=work, ok=False)
    assert f"! [remote rejected] main (the appliance only lets this session push refs/heads/{BRANCH})" in p.stderr
    assert world.upstream.head(REPO, BRANCH) is not None

    # A mixed push: the work branch goes through, main does not.
    mixed = world.commit(work, {"more.txt": "y\n"})
    p = world.git("push", "origin", f"HEAD:{BRANCH}", "HEAD:main", cwd=work, ok=False)
    assert "[remote rejected] HEAD -> main" in p.stderr
    assert world.upstream.head(REPO, BRANCH) == mixed
    assert world.upstream.head(REPO, "main") == before["refs/heads/main"]


def test_credential_never_reaches_the_guest_side(world):
    world.add_repo()
    token = world.issue(SESSION, REPO, BRANCH)
    work = world.clone(token)
    world.commit(work, {"x": "1\n"})
    world.git("push", "origin", f"HEAD:{BRANCH}", cwd=work)
    config = (work / ".git" / "config").read_text()
    assert token in config and world.secret not in config
    for f in (work / ".git").rglob("*"):
        if f.is_file():
            assert world.secret.encode() not in f.read_bytes(), f
    # Nor is it kept in any file on the host: it lives only in the config the daemon was given.
    for f in Path(world.cfg.state_dir).rglob("*"):
        if f.is_file() and f.suffix not in (".db", ".db-wal", ".db-shm"):
            assert world.secret.encode() not in f.read_bytes(), f
    # Only the hash of the session token is stored.
    for f in Path(world.cfg.state_dir).glob("appliance.db*"):
        assert token.encode() not in f.read_bytes()


def test_guest_checkout_keeps_the_token_out_of_the_remote_url(world):
    """The runner's checkout commands, run here as the guest would: the agent's `git remote -v`
    and git's messages show no token; git reads it from the credential file, and pushes work."""
    import subprocess

    from appliance.sessions.runner import clone_script

    world.add_repo()
    token = world.issue(SESSION, REPO, BRANCH)
    url, credential = world.service.guest_remote(token, REPO)
    assert token not in url
    creds = world.tmp / "state-dir" / "git-credentials"
    creds.parent.mkdir()
    creds.write_text(credential)
    creds.chmod(0o600)
    work = world.tmp / "checkout" / "api"
    script = clone_script(url, str(creds), str(work), BRANCH, "origin/main", email="agent@ses-x.appliance")
    p = subprocess.run(["bash", "-c", script], env=world.env, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    world.seen += [p.stdout, p.stderr]
    remotes = world.git("remote", "-v", cwd=work).stdout
    assert url in remotes and token not in remotes
    assert token not in (work / ".git" / "config").read_text()
    world.commit(work, {"x": "1\n"})
    push = world.git("push", "--porcelain", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=work)
    assert token not in push.stdout + push.stderr
    assert world.upstream.head(REPO, BRANCH) == world.git("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_bad_tokens_get_401_and_other_repositories_404(world):
    world.add_repo()
    world.add_repo("acme/secret-repo", files={"s.txt": "s\n"})
    mine = world.issue(SESSION, REPO, BRANCH)
    other = world.issue("sess-2", "acme/secret-repo", "claude/other")
    path = f"/{REPO}.git/info/refs?service=git-upload-pack"

    assert world.http(path, None)[0] == 401
    status, body = world.http(path, "agt_" + "x" * 43)
    assert status == 401 and b"acme" not in body
    assert world.http(path, mine)[0] == 200

    # Another session's token on my repository, and mine on theirs: not found, same answer as a
    # repository that does not exist at all.
    not_mine = world.http(path, other)
    assert not_mine == world.http(f"/{REPO}.git/info/refs?service=git-receive-pack", other)
    assert not_mine == world.http("/no/such-repo.git/info/refs?service=git-upload-pack", mine)
    assert not_mine[0] == 404 and b"secret" not in not_mine[1] and b"api" not in not_mine[1]
    p = world.clone(other, name="cross", ok=False)
    assert "not found" in p.stderr
    assert not (world.tmp / "cross").exists()

    # Revoked: the same token now gets 401 and git says authentication failed.
    assert tokens.revoke(SESSION) == 1
    assert world.http(path, mine)[0] == 401
    p = world.clone(mine, name="revoked", ok=False)
    assert "Authentication failed" in p.stderr
    assert world.http(f"/{REPO}.git/git-upload-pack", mine)[0] == 401


def test_upstream_refuses_non_fast_forward_and_branch_with_other_history(world):
    world.add_repo()
    token = world.issue(SESSION, REPO, BRANCH)
    work = world.clone(token)
    world.commit(work, {"mine.txt": "mine\n"})

    # Someone else created the work branch upstream with other history, after our mirror looked.
    world.proxy.mirrors.refresh_interval = 3600
    world.git("fetch", "origin", cwd=work)  # refreshes nothing now
    theirs = world.upstream.commit(REPO, BRANCH, {"theirs.txt": "theirs\n"}, base="main")
    p = world.git("push", "origin", f"HEAD:{BRANCH}", cwd=work, ok=False)
    assert f"! [remote rejected] HEAD -> {BRANCH} (upstream refused: " in p.stderr
    assert "fetch" in p.stderr.split("upstream refused:")[1]
    assert world.upstream.head(REPO, BRANCH) == theirs

    # Having been refused, the mirror is refreshed: the client now sees their branch and must
    # force to overwrite it — which upstream refuses as a non-fast-forward.
    world.git("fetch", "origin", cwd=work)
    assert world.git("rev-parse", f"origin/{BRANCH}", cwd=work).stdout.strip() == theirs
    p = world.git("push", "--force", "origin", f"HEAD:{BRANCH}", cwd=work, ok=False)
    assert f"! [remote rejected] HEAD -> {BRANCH} (upstream refused: non-fast-forward" in p.stderr
    assert world.upstream.head(REPO, BRANCH) == theirs

    # A proxy that allows force pushes does a compare-and-swap against what the client saw.
    world.proxy.allow_force_push = True
    mine = world.git("rev-parse", "HEAD", cwd=work).stdout.strip()
    world.git("push", "--force", "origin", f"HEAD:{BRANCH}", cwd=work)
    assert world.upstream.head(REPO, BRANCH) == mine


def test_upstream_hook_refusal_is_relayed(world):
    world.add_repo()
    world.upstream.set_hook(REPO, "pre-receive", "#!/bin/sh\necho 'branch names must match JIRA-123' >&2\nexit 1\n")
    token = world.issue(SESSION, REPO, BRANCH)
    work = world.clone(token)
    world.commit(work, {"x": "1\n"})
    p = world.git("push", "origin", f"HEAD:{BRANCH}", cwd=work, ok=False)
    assert "remote: upstream: branch names must match JIRA-123" in p.stderr
    assert "(upstream refused: pre-receive hook declined)" in p.stderr
    assert world.upstream.head(REPO, BRANCH) is None
    assert world.mirrors.head(REPO, BRANCH) is None


def test_upstream_unreachable_is_a_clear_error(world):
    world.add_repo()
    world.add_repo("acme/never-mirrored", files={"n": "n\n"})
    token = world.issue(SESSION, REPO, BRANCH)
    work = world.clone(token)
    world.commit(work, {"x": "1\n"})
    world.upstream.stop()

    p = world.git("fetch", "origin", cwd=work, ok=False)
    assert f"fatal: remote error: upstream of {REPO} unreachable" in p.stderr
    p = world.git("push", "origin", f"HEAD:{BRANCH}", cwd=work, ok=False)
    assert "fatal: remote error: upstream of" in p.stderr and "unreachable" in p.stderr

    # With a mirror that is fresh enough to advertise, the push itself finds upstream gone.
    world.proxy.mirrors.refresh_interval = 3600
    world.mirrors.path(REPO).joinpath("appliance-refreshed").touch()
    p = world.git("push", "origin", f"HEAD:{BRANCH}", cwd=work, ok=False)
    assert f"! [remote rejected] HEAD -> {BRANCH} (upstream of {REPO} unreachable" in p.stderr
    assert str(world.upstream.port) not in p.stderr  # where upstream lives is not the guest's business

    other = world.issue("sess-3", "acme/never-mirrored", BRANCH)
    p = world.clone(other, name="never", key="acme/never-mirrored", ok=False)
    assert "remote error: upstream of acme/never-mirrored unreachable" in p.stderr


def test_wrong_host_credential_is_reported_without_leaking(world):
    world.add_repo(credential="ghp_wrong_" + "0" * 20)
    token = world.issue(SESSION, REPO, BRANCH)
    p = world.clone(token, ok=False)
    assert f"remote error: upstream of {REPO} refused the appliance's credential" in p.stderr
    assert "ghp_wrong" not in p.stderr
    assert any(r.user == "x-access-token" and not r.authorized for r in world.upstream.requests)


def test_large_push_and_gzipped_fetch(world):
    world.add_repo()
    token = world.issue(SESSION, REPO, BRANCH)
    work = world.clone(token)
    blob = os.urandom(1536 * 1024)  # above http.postBuffer: git probes, then sends chunked
    big = world.commit(work, {"data/blob.bin": blob})
    world.git("push", "origin", f"HEAD:{BRANCH}", cwd=work)
    assert world.upstream.head(REPO, BRANCH) == big
    posts = [r for r in world.recorder.seen if r["PATH_INFO"].endswith("git-receive-pack")]
    assert any(r["HTTP_TRANSFER_ENCODING"] == "chunked" for r in posts)

    # Many local commits make the fetch's "have" list big enough for git to gzip the request
    # (dated after everything upstream, so that negotiation walks through them first).
    for i in range(40):
        run_git(["commit", "-q", "--allow-empty", "-m", f"local {i}"], cwd=work,
                env={**world.env, "GIT_COMMITTER_DATE": f"{4000000000 + i} +0000"})
    upstream_main = world.upstream.commit(REPO, "main", {"CHANGELOG": "upstream\n"})
    world.git("fetch", "origin", cwd=work)
    assert world.git("rev-parse", "origin/main", cwd=work).stdout.strip() == upstream_main
    assert any(r["HTTP_CONTENT_ENCODING"] == "gzip" for r in world.recorder.seen)


def test_concurrent_first_clones_share_one_mirror(world):
    world.add_repo()
    tokens_ = [world.issue(f"sess-{i}", REPO, f"claude/b{i}") for i in range(3)]
    results = {}

    def clone(i):
        results[i] = run_git(["clone", world.url(tokens_[i]), str(world.tmp / f"c{i}")], env=world.env, check=False)

    threads = [threading.Thread(target=clone, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in results.values():
        world.seen += [p.stdout, p.stderr]
        assert p.returncode == 0, p.stderr
    mirrors = [p.name for p in world.mirrors.root.iterdir() if not p.name.startswith(".")]
    assert mirrors == ["acme~api.git"]


def test_upstream_fixture_itself(git_server, tmp_path):
    """The test upstream needs its token, accepts pushes, and takes gzip'd requests."""
    env = clean_git_env(tmp_path)
    git_server.create_repo("solo", {"a": "1\n"})
    url = git_server.url("solo")
    p = run_git(["clone", url, str(tmp_path / "anon")], env=env, check=False)
    assert p.returncode != 0 and "could not read Username" in p.stderr
    authed = url.replace("http://", f"http://someone:{git_server.token}@")
    work = tmp_path / "w"
    run_git(["clone", "-q", authed, str(work)], env=env)
    for i in range(40):  # a long "have" list: git gzips the fetch request
        run_git(["commit", "-q", "--allow-empty", "-m", str(i)], cwd=work,
                env={**env, "GIT_COMMITTER_DATE": f"{4000000000 + i} +0000"})
    git_server.commit("solo", "main", {"b": "2\n"})
    run_git(["fetch", "-q", "origin"], cwd=work, env=env)
    assert any(r.content_encoding == "gzip" and r.authorized for r in git_server.requests)
    run_git(["push", "-q", "origin", "HEAD:refs/heads/pushed"], cwd=work, env=env)
    assert git_server.head("solo", "pushed") == run_git(["rev-parse", "HEAD"], cwd=work, env=env).stdout.strip()
    assert git_server.receive_pack_posts("solo") == 1
    assert git_server.read_file("solo", "main", "b") == "2\n"
