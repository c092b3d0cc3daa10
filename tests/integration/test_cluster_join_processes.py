"""Joining a worker host with real processes: control is `appliance serve` (cluster_mode on, a
throw-away PostgreSQL, HTTPS with a self-signed certificate); an admin mints a join token with
`appliance host join-token` on control; a new host runs `appliance worker --join https://… --token …
--fingerprint …` with the dry-run turn runner. It writes what control issued into its config file
(keeping what was there), registers, runs a turn, and pulls control's image by hash with the
credential it got at the join. A wrong certificate gets nothing sent."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
import tomllib

import pytest
from fake_image import FILES, fake_image

from appliance import tls
from appliance.accounts.models import User
from appliance.cluster.models import Host, JoinToken, TurnAttempt
from appliance.db import open_database
from appliance.repos.models import Repository
from appliance.sessions.models import Turn, TurnStatus
from appliance.sessions.service import NewSession, SessionService

from helpers import ROOT, make_config
from postgres import free_port

CLUSTER = {"APPLIANCE_CLUSTER_MODE": "on", "APPLIANCE_HOST_HEARTBEAT_INTERVAL": "0.5",
           "APPLIANCE_HOST_STALE_AFTER": "5", "APPLIANCE_TURN_RUNNER": "dry-run",
           "APPLIANCE_DRY_RUN_TURN_SECONDS": "0.2"}


def clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update({"PYTHONPATH": str(ROOT), **extra})
    return env


def cli(env, *argv, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def wait_for(predicate, what, proc=None, log=None, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{log.read_text()[-3000:]}" if log else ""))


@pytest.fixture
def control(tmp_path, pg_url):
    state = tmp_path / "control"
    state.mkdir()
    cert, key = state / "tls.crt", state / "tls.key"
    info = tls.generate_self_signed(cert, key, ["localhost", "127.0.0.1"])
    port = free_port()
    fake_image(state / "images")
    env = clean_env(APPLIANCE_CONFIG=str(state / "none.toml"), APPLIANCE_STATE_DIR=str(state),
                    APPLIANCE_IMAGE_DIR=str(state / "images"),
                    APPLIANCE_DATABASE_URL=pg_url, APPLIANCE_WORKER_DATABASE_URL=pg_url,
                    APPLIANCE_LISTEN_PORT=str(port), APPLIANCE_TLS_CERT=str(cert), APPLIANCE_TLS_KEY=str(key),
                    APPLIANCE_HTTP_REDIRECT_PORT="0", **CLUSTER)
    log = state / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "serve"], env=env, cwd=ROOT,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "listening on" in log.read_text(), "control to listen", proc, log)
        yield {"url": f"https://127.0.0.1:{port}", "fingerprint": info.fingerprint, "env": env, "db": pg_url,
               "log": log, "state": state}
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_host_joins_over_https_and_runs_a_turn(control, tmp_path):
    minted = cli(control["env"], "host", "join-token", "--ttl", "10")
    assert minted.returncode == 0, minted.stderr
    command = re.search(r"appliance worker --join \S+ --token (apj_\S+) --fingerprint (\S+)", minted.stdout)
    assert command and command.group(2) == control["fingerprint"], minted.stdout
    token = command.group(1)

    host = tmp_path / "h16b-host"
    host.mkdir()
    config = host / "appliance.toml"
    config.write_text("# this host's own settings\n[cluster]\nhost_capacity = 3  # a big machine\n")
    config.chmod(0o600)
    env = clean_env(APPLIANCE_CONFIG=str(config), APPLIANCE_STATE_DIR=str(host),
                    **{k: v for k, v in CLUSTER.items() if k != "APPLIANCE_CLUSTER_MODE"})
    log = host / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "worker", "--join", control["url"],
                               "--token", token, "--fingerprint", control["fingerprint"], "--host-id", "h16b-joined"],
                              env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        open_database(control["db"])
        wait_for(lambda: Host.get_or_none(Host.id == "h16b-joined") is not None, "the joined host's row", worker, log)
        written = tomllib.loads(config.read_text())
        assert written["database"]["database_url"] == control["db"]
        credential = written["cluster"].pop("host_credential")
        assert written["cluster"] == {"host_capacity": 3, "cluster_mode": "on", "host_id": "h16b-joined",
                                      "control_url": control["url"], "control_fingerprint": control["fingerprint"],
                                      "control_ca": ""}
        assert credential.startswith("aph_") and credential[4:] not in control["log"].read_text()
        assert "# a big machine" in config.read_text(), "the file's own lines stay"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert Host.get_by_id("h16b-joined").capacity == 3
        assert JoinToken.get().used_by_host == "h16b-joined"

        # control admits a turn; the joined worker runs it
        user = User.create(username="alice")
        repo = Repository.create(name="acme/app", url="/srv/app.git")
        cfg = make_config(tmp_path / "client", database_url=control["db"], cluster_mode="on", turn_runner="dry-run")
        session = SessionService(cfg).create(user, NewSession(repo.name, "task", agent="command", command="true"))
        wait_for(lambda: Turn.get(Turn.session == session.id).status == TurnStatus.COMPLETED, "the turn", worker, log)
        assert [a.host for a in TurnAttempt.select()] == ["h16b-joined"]
        # the image, by hash, with the host's own credential
        pulled = cli({**env, "APPLIANCE_IMAGE_DIR": str(host / "images")}, "image", "pull", "minimal")
        assert pulled.returncode == 0 and "SHA-256 checked" in pulled.stdout, pulled.stderr
        assert (host / "images" / "minimal" / "disk.qcow2").read_bytes() == FILES["disk.qcow2"]
    finally:
        worker.terminate()
        worker.wait(30)
    assert token[4:] not in control["log"].read_text() + log.read_text(), "the token is in no log"

    # the token worked once: a second host with it gets nothing and its config stays as it was
    other = tmp_path / "other.toml"
    again = cli(clean_env(APPLIANCE_CONFIG=str(other), APPLIANCE_STATE_DIR=str(tmp_path / "o"), **CLUSTER),
                "worker", "--join", control["url"], "--token", token, "--fingerprint", control["fingerprint"])
    assert again.returncode == 1 and "already used" in again.stderr and not other.exists()


def test_a_wrong_certificate_or_database_gets_nothing_sent_or_written(control, tmp_path):
    minted = cli(control["env"], "host", "join-token")
    token = re.search(r"--token (apj_\S+)", minted.stdout).group(1)
    wrong = tls.generate_self_signed(tmp_path / "o.crt", tmp_path / "o.key", ["localhost"]).fingerprint
    config = tmp_path / "w.toml"
    env = clean_env(APPLIANCE_CONFIG=str(config), APPLIANCE_STATE_DIR=str(tmp_path / "w"))
    r = cli(env, "worker", "--join", control["url"], "--token", token, "--fingerprint", wrong)
    assert r.returncode == 1 and "nothing was sent" in r.stderr and not config.exists()
    open_database(control["db"])
    assert JoinToken.get().used_at is None, "the token never reached control"

    config.write_text('[database]\ndatabase_url = "sqlite:////var/lib/appliance/appliance.db"\n')
    r = cli(env, "worker", "--join", control["url"], "--token", token, "--fingerprint", control["fingerprint"])
    assert r.returncode == 1 and "already names another database" in r.stderr
    assert "sqlite" in config.read_text() and JoinToken.get().used_at is None

    # as scripts/install's worker hint does it: join, write the config and exit (systemd runs it after)
    fresh = tmp_path / "fresh.toml"
    env = clean_env(APPLIANCE_CONFIG=str(fresh), APPLIANCE_STATE_DIR=str(tmp_path / "f"))
    r = cli(env, "worker", "--join", control["url"], "--token", token, "--fingerprint", control["fingerprint"],
            "--host-id", "h16b-later", "--no-run")
    assert r.returncode == 0 and "joined" in r.stdout, r.stderr
    joined = tomllib.loads(fresh.read_text())["cluster"]
    assert (joined["cluster_mode"], joined["host_id"], joined["control_url"]) == ("on", "h16b-later", control["url"])
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600 and JoinToken.get().used_by_host == "h16b-later"
