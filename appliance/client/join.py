"""The new host's side of joining (`appliance worker --join URL --token T [--fingerprint F | --ca F]`):
settle trust in control's certificate exactly as `appliance login` does (client/trust.py: a pinned
fingerprint, a CA file, or the system's CAs) before the token is sent, present the join token, and
record what control issued (the shared database URL, cluster_mode on, the host id, and this host's
credential with how to reach control: for pulling images) in this host's configuration file. Control's side: appliance/cluster/join.py."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

from appliance_base.config_file import read_settings, update_settings

from ..errors import ApplianceError, ConfigError
from . import trust
from .store import normalize_server

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def request_grant(server: str, token: str, host_id: str, fingerprint: str = "", ca: str = "") -> tuple[dict, dict]:
    """POST the join token to control; its grant ({host_id, database_url, cluster_mode, host_credential})
    and how control's certificate is trusted ({"fingerprint": …} | {"ca": …} | {})."""
    server = normalize_server(server)
    if server.startswith("http://") and trust.host_port(server)[0] not in LOOPBACK:
        raise ApplianceError(f"{server} is plain HTTP: the join token and the shared database's password would "
                             "cross the network in clear; nothing was sent",
                             hint="join over https:// (scripts/install gives control a certificate)")
    trusted = trust.decide(server, fingerprint=fingerprint, ca=ca)  # refuses a wrong certificate, sends nothing
    opener = trust.opener(server, **trusted)
    req = urllib.request.Request(f"{server}/api/v1/cluster/join", method="POST",
                                 data=json.dumps({"token": token, "host_id": host_id}).encode(),
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with opener.open(req, timeout=30) as resp:
            grant = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read() or b"{}")
        except ValueError:
            body = {}
        raise ApplianceError(f"control refused to let this host join: {body.get('error') or f'HTTP {e.code}'}",
                             hint=body.get("hint", "")) from None
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        if isinstance(getattr(e, "reason", None), ApplianceError):
            raise e.reason from None  # the pinned certificate did not match
        raise ApplianceError(f"cannot reach control at {server}: {getattr(e, 'reason', e)}",
                             hint="is the URL right and control running? (`appliance doctor` there)") from None
    except ValueError:
        raise ApplianceError(f"{server} did not answer the join with JSON", hint="is this control's URL?") from None
    if not isinstance(grant, dict) or not all(isinstance(grant.get(k), str) for k in ("host_id", "database_url")):
        raise ApplianceError(f"{server} answered the join without a database URL", hint="is this control's URL?")
    return grant, trusted


def check_database(config_path: Path, database_url: str | None = None) -> None:
    """Refuse to turn a host that already uses another database into a worker of this one (its own
    sessions would be orphaned). With no URL yet: refuse a file naming a non-PostgreSQL database."""
    named = read_settings(config_path).get("database_url")
    if not named:
        return
    if (database_url is None and not str(named).startswith(("postgresql://", "postgres://"))) or (
            database_url is not None and named != database_url):
        raise ConfigError(f"{config_path} already names another database ({_without_password(str(named))}); "
                          "this host was not changed",
                          hint="if this host should become a worker of that control, remove database_url from the "
                               "file (its own data stays where it is) and join again with a fresh token")


def join(config_path: Path, server: str, token: str, host_id: str, fingerprint: str = "", ca: str = "") -> dict:
    """Join control and record the grant in `config_path`; the grant."""
    check_database(config_path)
    grant, trusted = request_grant(server, token, host_id, fingerprint, ca)
    check_database(config_path, grant["database_url"])
    update_settings(config_path, {"database_url": grant["database_url"], "cluster_mode": "on",
                                  "host_id": grant["host_id"], "control_url": normalize_server(server),
                                  "control_fingerprint": trusted.get("fingerprint", ""),
                                  "control_ca": trusted.get("ca", ""),
                                  "host_credential": grant.get("host_credential", "")})
    return grant


def _without_password(url: str) -> str:
    from ..redact import redact_text

    return redact_text(url)
