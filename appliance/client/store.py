"""The stored login: server URL + API token (+ how its certificate is trusted: a pinned fingerprint
or a CA file, see trust.py) in `~/.config/appliance/client.json` (or the file named
by `$APPLIANCE_CLIENT_CONFIG`), mode 0600."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ApplianceError


@dataclass(frozen=True)
class Login:
    server: str
    token: str
    fingerprint: str = ""  # the pinned SHA-256 of the server's certificate (SHA256:AB:…)
    ca: str = ""  # a CA file the server's certificate must chain to


def login_path() -> Path:
    if os.environ.get("APPLIANCE_CLIENT_CONFIG"):
        return Path(os.environ["APPLIANCE_CLIENT_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "appliance" / "client.json"


def normalize_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise ApplianceError(f"not a server URL: {url!r}", hint="use http://HOST:PORT or https://HOST")
    return url


def save_login(login: Login, path: Path | None = None) -> Path:
    path = path or login_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        data = {"server": login.server, "token": login.token}
        data.update({k: v for k, v in (("fingerprint", login.fingerprint), ("ca", login.ca)) if v})
        json.dump(data, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)  # also when the file existed with a wider mode
    os.replace(tmp, path)
    return path


def load_login(path: Path | None = None) -> Login:
    path = path or login_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ApplianceError("not logged in to an appliance", hint="run 'appliance login URL' first") from None
    except (OSError, ValueError) as e:
        raise ApplianceError(f"{path}: unreadable login ({e})", hint="run 'appliance login URL' again") from None
    if not isinstance(data, dict) or not data.get("server") or not data.get("token"):
        raise ApplianceError(f"{path}: incomplete login", hint="run 'appliance login URL' again")
    return Login(server=str(data["server"]), token=str(data["token"]),
                 fingerprint=str(data.get("fingerprint") or ""), ca=str(data.get("ca") or ""))
