"""The one wrapper around the appliance's REST API (urllib). Every failure becomes an
ApplianceError with a one-line message and a hint; the rest of the client speaks in dicts."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request

from ..errors import ApplianceError, Forbidden, Invalid, NotFound
from . import trust
from .store import Login

_BY_STATUS = {404: NotFound, 403: Forbidden, 400: Invalid, 409: Invalid}


class Client:
    def __init__(self, login: Login, timeout: float = 30.0):
        self.server = login.server.rstrip("/")
        self.token = login.token
        self.timeout = timeout
        self.ssl_context = trust.client_context(self.server, login.fingerprint, login.ca)
        self._opener = trust.opener(self.server, login.fingerprint, login.ca)

    def url(self, path: str) -> str:
        return f"{self.server}{path}"

    def console_url(self, session_id: str) -> str:
        return f"{self.server}/sessions/{session_id}"

    def request(self, method: str, path: str, body: dict | None = None, params: dict | None = None,
                timeout: float | None = None) -> dict:
        url = self.url("/api/v1" + path)
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise self._error(e) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApplianceError(f"cannot reach the appliance at {self.server}: {reason}",
                                 hint="is the server running and the URL right? ('appliance login URL' to change it)") from None
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApplianceError(f"{self.server} answered {method} {path} with something that is not JSON",
                                 hint="is this the appliance's URL? ('appliance login URL')") from None

    def _error(self, e: urllib.error.HTTPError) -> ApplianceError:
        try:
            body = json.loads(e.read() or b"{}")
        except ValueError:
            body = {}
        message = body.get("error") or f"HTTP {e.code} {e.reason}"
        hint = body.get("hint", "")
        if e.code == 401:
            return ApplianceError(f"the appliance refused the token: {message}",
                                  hint="log in again with a fresh token: 'appliance login URL'")
        cls = _BY_STATUS.get(e.code, ApplianceError)
        return cls(message, hint=hint)

    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params=params or None,
                            timeout=self.timeout + float(params.get("wait") or 0))

    def post(self, path: str, body: dict | None = None) -> dict:
        return self.request("POST", path, body=body if body is not None else {})

    def patch(self, path: str, body: dict) -> dict:
        return self.request("PATCH", path, body=body)

    def delete(self, path: str) -> dict:
        return self.request("DELETE", path)

    # -- websocket ------------------------------------------------------------------------------
    def websocket_url(self, path: str) -> str:
        scheme = "wss" if self.server.startswith("https://") else "ws"
        return scheme + self.server[self.server.index("://"):] + "/api/v1" + path
