"""HTTPS by default: a real gunicorn (gthread) server on 127.0.0.1 with a freshly generated
certificate serves the app and its websockets; cookies are Secure/HttpOnly/SameSite=Lax, answers
carry HSTS, plain HTTP only redirects; the CLI pins the certificate and refuses a changed one
before it sends anything (the token included)."""

from __future__ import annotations

import dataclasses
import http.client
import http.cookiejar
import io
import json
import re
import ssl
import urllib.parse
import urllib.request

import pytest
import simple_websocket
from werkzeug.security import generate_password_hash

from appliance import tls
from appliance.accounts.models import ApiToken, User
from appliance.cli.main import main
from appliance.client import Client, Login, load_login, trust
from appliance.client.trust import CertificateChanged
from appliance.errors import ApplianceError
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Session
from appliance.sessions.service import SessionService
from appliance.sessions.stream import emit
from appliance.webserver import WebServer, redirect_app
from webui import create_app

PASSWORD = "correct horse battery"


def make_cert(tmp_path, name):
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    info = tls.generate_self_signed(cert, key, ["localhost", "127.0.0.1"])
    return str(cert), str(key), info


def serve(cfg, cert, key, port=0):
    tls_cfg = dataclasses.replace(cfg, tls_cert=cert, tls_key=key)
    app = create_app(Services.build(tls_cfg, SessionService(tls_cfg)))
    return WebServer(app, "127.0.0.1", port, cert, key, threads=16).start()


@pytest.fixture
def https(db, cfg, tmp_path):
    cert, key, info = make_cert(tmp_path, "a")
    server = serve(cfg, cert, key)
    yield server, cert, info
    server.shutdown()


def ca_context(cert):
    return ssl.create_default_context(cafile=cert)


def test_certificate_is_for_the_names_and_key_is_private(tmp_path):
    _, _, info = make_cert(tmp_path, "c")
    assert set(info.names) == {"localhost", "127.0.0.1"}
    assert info.fingerprint.startswith("SHA256:") and len(info.fingerprint) == 7 + 95
    assert (tmp_path / "c.key").stat().st_mode & 0o077 == 0
    assert tls.normalize_fingerprint(info.fingerprint.replace(":", "").lower()[6:]) == info.fingerprint


def test_the_app_is_served_over_tls_with_hsts(https):
    server, cert, _ = https
    assert server.url.startswith("https://127.0.0.1:")
    with urllib.request.urlopen(server.url + "healthz", context=ca_context(cert), timeout=10) as r:
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_session_cookie_is_secure_httponly_lax(https):
    server, cert, _ = https
    with urllib.request.urlopen(server.url + "login", context=ca_context(cert), timeout=10) as r:
        cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=lax"} <= flags


def test_plain_http_only_redirects_to_https(https):
    server, _, _ = https
    redirect = WebServer(redirect_app(server.port), "127.0.0.1", 0, threads=2, name="redirect").start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", redirect.port, timeout=10)
        conn.request("POST", "/login?next=/sessions", body=b"username=a&password=b",
                     headers={"Host": f"appliance.example:{redirect.port}"})
        r = conn.getresponse()
        assert r.status == 308
        assert r.getheader("Location") == f"https://appliance.example:{server.port}/login?next=/sessions"
        assert b"password" not in r.read()
    finally:
        redirect.shutdown()


def test_a_websocket_works_through_the_tls_server(https):
    """Sign in over HTTPS, then follow a session's live events on the console websocket."""
    server, cert, _ = https
    user = User.create(username="alice", password_hash=generate_password_hash(PASSWORD))
    repo = Repository.create(name="acme/api", url="/srv/api.git")
    session = Session.create(owner=user, repository=repo, base_branch="main", work_branch="w", status="idle")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ca_context(cert)),
                                         urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(server.url + "login", timeout=10).read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    opener.open(server.url + "login", data=urllib.parse.urlencode(
        {"username": "alice", "password": PASSWORD, "csrf_token": csrf}).encode(), timeout=10)
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    assert "session=" in cookie
    emit(session, "log", {"stream": "agent", "text": "hello over TLS"})
    ws = simple_websocket.Client.connect(server.url.replace("https", "wss") + f"ws/sessions/{session.id}/events?after=0",
                                         headers={"Cookie": cookie}, ssl_context=ca_context(cert))
    try:
        first = json.loads(ws.receive(timeout=10))
        assert first["kind"] == "log" and "hello over TLS" in json.dumps(first)
    finally:
        ws.close()


# -- the CLI's trust --------------------------------------------------------------------------------

def test_pinned_client_talks_to_the_right_server(https):
    server, _, info = https
    alice = User.create(username="alice")
    client = Client(Login(server.url.rstrip("/"), ApiToken.issue(alice), fingerprint=info.fingerprint))
    assert client.get("/me")["username"] == "alice"


def test_pinned_client_refuses_another_certificate_before_sending_the_token(https, tmp_path):
    server, _, _ = https
    alice = User.create(username="alice")
    token = ApiToken.issue(alice)
    _, _, other = make_cert(tmp_path, "other")
    client = Client(Login(server.url.rstrip("/"), token, fingerprint=other.fingerprint))
    with pytest.raises(CertificateChanged, match="changed") as e:
        client.get("/me")
    assert "--fingerprint" in e.value.hint
    assert ApiToken.get(ApiToken.user == alice).last_used_at is None  # the token never reached it


def test_ca_file_trust_verifies_the_chain_and_the_name(https):
    server, cert, _ = https
    alice = User.create(username="alice")
    url = server.url.rstrip("/")
    assert trust.decide(url, ca=cert) == {"ca": cert}
    assert Client(Login(url, ApiToken.issue(alice), ca=cert)).get("/me")["username"] == "alice"


def test_first_use_asks_and_a_refusal_or_no_terminal_stores_nothing(https):
    server, _, info = https
    url = server.url.rstrip("/")
    shown = []
    assert trust.decide(url, ask=lambda fp: shown.append(fp) or True) == {"fingerprint": info.fingerprint}
    assert shown == [info.fingerprint]
    with pytest.raises(ApplianceError, match="not trusted"):
        trust.decide(url, ask=lambda fp: False)
    with pytest.raises(ApplianceError, match="no trusted authority") as e:
        trust.decide(url)
    assert f"--fingerprint {info.fingerprint}" in e.value.hint


def test_cli_login_pins_and_refuses_a_changed_certificate(db, cfg, tmp_path, monkeypatch, capsys):
    cert, key, info = make_cert(tmp_path, "first")
    server = serve(cfg, cert, key)
    url, port = server.url.rstrip("/"), server.port
    alice = User.create(username="alice")
    monkeypatch.setenv("APPLIANCE_CLIENT_CONFIG", str(tmp_path / "client.json"))
    monkeypatch.setattr("sys.stdin", io.StringIO(ApiToken.issue(alice) + "\n"))
    try:
        assert main(["login", url, "--token-stdin", "--fingerprint", info.fingerprint]) == 0
    finally:
        server.shutdown()
    assert load_login().fingerprint == info.fingerprint
    assert "pinned" in capsys.readouterr().out

    # the same address now presents another certificate (a man in the middle, or a reinstall)
    cert2, key2, info2 = make_cert(tmp_path, "second")
    server = serve(cfg, cert2, key2, port=port)
    try:
        with pytest.raises(CertificateChanged, match=f"pinned {info.fingerprint}, now {info2.fingerprint}"):
            Client(load_login()).get("/me")
        monkeypatch.setattr("sys.stdin", io.StringIO(ApiToken.issue(alice) + "\n"))
        assert main(["login", url, "--token-stdin"]) == 1
        assert "changed" in capsys.readouterr().err
        assert load_login().fingerprint == info.fingerprint  # the old pin stays
        with pytest.raises(CertificateChanged, match="not the fingerprint you gave"):
            trust.decide(url, fingerprint=info.fingerprint)
    finally:
        server.shutdown()


# -- the admin's side: install's certificate, doctor ------------------------------------------------

def test_tls_init_prints_the_fingerprint_once_and_keeps_the_pair(tmp_path, capsys):
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    args = ["tls", "init", "--cert", str(cert), "--key", str(key), "--name", "appliance.example", "--name", "10.0.0.5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    info = tls.certificate_info(cert)
    assert f"fingerprint: {info.fingerprint}" in out and set(info.names) == {"appliance.example", "10.0.0.5"}
    assert main(args) == 0  # an upgrade keeps it: clients' pins stay valid
    assert "kept" in capsys.readouterr().out and tls.certificate_info(cert) == info


def test_doctor_shows_fingerprint_and_expiry(cfg, tmp_path):
    import datetime as dt

    from appliance import doctor

    cert, key, info = make_cert(tmp_path, "d")
    tls_cfg = dataclasses.replace(cfg, tls_cert=cert, tls_key=key)
    check = doctor.check_tls(tls_cfg)
    assert check.status == doctor.OK and info.fingerprint in check.detail
    assert f"expires {info.not_after:%Y-%m-%d}" in check.detail
    later = info.not_after + dt.timedelta(days=1)
    assert doctor.check_tls(tls_cfg, now=later).status == doctor.FAIL
    assert doctor.check_tls(cfg).status == doctor.WARN  # plain HTTP is said


def test_tls_settings_go_together(tmp_path):
    from appliance.errors import ConfigError

    from helpers import make_config

    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        make_config(tmp_path / "s", tls_cert="/etc/appliance/tls/cert.pem")


def test_doctor_reaches_the_daemon_over_tls_and_knows_its_certificate(https, cfg, tmp_path):
    from appliance import doctor

    server, cert, _ = https
    key = cert[:-len(".crt")] + ".key"
    serving = dataclasses.replace(cfg, tls_cert=cert, tls_key=key, listen_port=server.port)
    check = doctor.check_daemon(serving)
    assert check.status == doctor.OK and check.detail.startswith("answering at https://")
    other_cert, other_key, _ = make_cert(tmp_path, "not-served")  # configured, but not what is served
    check = doctor.check_daemon(dataclasses.replace(serving, tls_cert=other_cert, tls_key=other_key))
    assert check.status == doctor.FAIL


STOP_WITH_OPEN_WEBSOCKET = """
import signal, sys, threading, time
import simple_websocket
from flask import Flask
from flask_sock import Sock
from appliance.webserver import WebServer

app = Flask(__name__)
sock = Sock(app)

@sock.route("/ws")
def follow(ws):
    while True:  # like an event follower: it never ends by itself
        ws.send("ping")
        time.sleep(0.5)

server = WebServer(app, "127.0.0.1", 0, threads=4)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())

def follow_then_stop():
    client = simple_websocket.Client.connect(f"ws://127.0.0.1:{server.port}/ws")
    client.receive(timeout=10)
    signal.raise_signal(signal.SIGTERM)  # the client stays connected

threading.Thread(target=follow_then_stop, daemon=True).start()
server.serve_forever()
print("stopped", flush=True)
"""


def test_the_daemon_process_can_exit_while_a_websocket_is_open(tmp_path):
    """SIGTERM with a follower connected: the server stops and the process ends (the handler's
    thread does not hold the interpreter's exit until systemd kills it)."""
    import subprocess
    import sys

    from helpers import ROOT

    script = tmp_path / "serve.py"
    script.write_text(STOP_WITH_OPEN_WEBSOCKET)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "stopped" in done.stdout, done.stderr
