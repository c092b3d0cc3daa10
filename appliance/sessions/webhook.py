"""Webhook POSTs that cannot be pointed inside: the daemon runs on the host, next to the console,
a metadata service, the host's own ports and the company's internal network, and any user chooses
the URL. So:

* the host name is resolved, and every address must be public: not loopback, link-local, private,
  multicast, reserved, a cloud platform endpoint or one of the host's own addresses — unless an
  admin allowed its network (`webhook_allowed_networks`, e.g. an internal chat server);
* the connection goes to the address that was checked (no second lookup that DNS rebinding
  could answer differently), with the URL's name in the Host header and in TLS;
* redirects are never followed (a public endpoint could redirect inside).

`check_url` runs when a user saves the URL (a 400 naming the reason) and again inside `post_json`
before every delivery.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from netpolicy.hostaddrs import read_host_addresses
from netpolicy.ruleset import PLATFORM_ENDPOINTS

from ..errors import Invalid

HINT = "use a public http(s) URL, or ask an admin to add its network to webhook_allowed_networks"
_PLATFORM = [ipaddress.ip_network(n) for n in PLATFORM_ENDPOINTS] + [ipaddress.ip_network("fd00:ec2::/32")]


class WebhookRefused(Invalid):
    """A webhook URL that points at the host or an internal network."""


def allowed_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The admin's `webhook_allowed_networks`: comma/space separated networks (ValueError if bad)."""
    return [ipaddress.ip_network(n, strict=False) for n in text.replace(",", " ").split()]


def refusal(address: str, allowed=(), host_addresses: frozenset[str] = frozenset()) -> str | None:
    """Why a webhook may not go to `address`, or None if it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if any(ip in net for net in allowed):
        return None
    if any(ip in net for net in _PLATFORM):
        return "a cloud platform endpoint"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if ip.is_private:
        return "a private address"
    if str(ip) in host_addresses:
        return "an address of this host itself"
    if not ip.is_global or ip.is_multicast:
        return "not a public address"
    return None


def _target(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("webhook_url must be an http:// or https:// URL with a host", hint=HINT)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise Invalid(f"webhook_url: {e}", hint=HINT) from e
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_url(url: str, allowed_text: str = "", *, require_resolution: bool = False) -> list[str]:
    """The addresses `url` may be delivered to; WebhookRefused if any of them is off limits.

    A name that does not resolve now is accepted when saving (DNS may be down; delivery checks
    again), refused when delivering (`require_resolution`)."""
    _scheme, host, port, _path = _target(url)
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as e:
        if require_resolution:
            raise WebhookRefused(f"webhook_url: {host} does not resolve ({e})", hint=HINT) from e
        return []
    allowed = allowed_networks(allowed_text)
    own = read_host_addresses()
    for address in addresses:
        why = refusal(address, allowed, own)
        if why:
            shown = address if host == address else f"{host} resolves to {address}, which"
            raise WebhookRefused(f"webhook_url: {shown} is {why}", hint=HINT)
    return addresses


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post_json(url: str, body: bytes, allowed_text: str = "", timeout: float = 10.0) -> int:
    """POST `body` to `url` at an address that passed the checks; the HTTP status. A redirect is
    returned as its status, never followed."""
    scheme, host, port, path = _target(url)
    address = check_url(url, allowed_text, require_resolution=True)[0]
    conn_cls = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    conn = conn_cls(host, port, address, timeout)
    try:
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json", "User-Agent": "appliance"})
        response = conn.getresponse()
        response.read(65536)
        return response.status
    finally:
        conn.close()
