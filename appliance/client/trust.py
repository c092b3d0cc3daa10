"""How the CLI trusts the appliance's HTTPS certificate, decided at `appliance login` and stored
with the login:

- `ca`: a CA file the certificate must chain to (with the host name checked), for appliances with
  a company CA;
- `fingerprint`: a pinned SHA-256 of the exact certificate (a self-signed one, as scripts/install
  makes): any other certificate is refused, whoever signed it, before a byte of the request (or
  the bearer token) is sent;
- neither: the system's trusted CAs (a certificate from a public CA, renewed freely).
"""

from __future__ import annotations

import ssl
import urllib.parse
import urllib.request

from .. import tls
from ..errors import ApplianceError


class CertificateChanged(ApplianceError):
    pass


def changed_error(server: str, pinned: str, seen: str) -> CertificateChanged:
    return CertificateChanged(
        f"the certificate of {server} changed: pinned {pinned}, now {seen}. Nothing was sent. "
        "Someone may be intercepting the connection",
        hint="if the admin replaced the certificate, compare the new fingerprint with 'appliance doctor' "
             f"on the server, then run 'appliance login {server} --fingerprint {seen}'")


def pinned_context(server: str, fingerprint: str) -> tls.PinnedContext:
    """Only the certificate with this fingerprint; another one is refused before anything is sent."""
    return tls.pinned_context(fingerprint, mismatch=lambda seen: changed_error(server, tls.normalize_fingerprint(
        fingerprint), seen))


def client_context(server: str, fingerprint: str = "", ca: str = "") -> ssl.SSLContext | None:
    """The SSL context for requests to `server` (None for plain HTTP)."""
    if not server.startswith("https://"):
        return None
    if fingerprint:
        return pinned_context(server, fingerprint)
    if ca:
        try:
            return ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise ApplianceError(f"cannot read the CA file {ca}: {e}",
                                 hint="run 'appliance login URL --ca FILE' with a readable PEM file") from None
    return ssl.create_default_context()


def opener(server: str, fingerprint: str = "", ca: str = "") -> urllib.request.OpenerDirector:
    ctx = client_context(server, fingerprint, ca)
    handlers = [urllib.request.HTTPSHandler(context=ctx)] if ctx is not None else []
    return urllib.request.build_opener(*handlers)


def host_port(server: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(server)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _handshake(server: str, ctx: ssl.SSLContext) -> None:
    import socket

    host, port = host_port(server)
    with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=host):
        pass


def system_trusts(server: str) -> bool:
    try:
        _handshake(server, ssl.create_default_context())
        return True
    except ssl.SSLCertVerificationError:
        return False
    except (OSError, ssl.SSLError) as e:
        raise ApplianceError(f"cannot open a TLS connection to {server}: {e}",
                             hint="is the URL right, and does the appliance serve HTTPS there?") from None


def decide(server: str, *, fingerprint: str = "", ca: str = "", pinned_before: str = "", ask=None) -> dict:
    """What `appliance login` stores: {"fingerprint": …} or {"ca": …} or {} (system CAs).

    `pinned_before` is the pin of an earlier login to the same server: a different certificate is
    refused unless the caller names the new one (`fingerprint`). `ask(fingerprint) -> bool` asks a
    person on first use; None means nobody can be asked."""
    if not server.startswith("https://"):
        return {}
    if ca:
        try:
            _handshake(server, client_context(server, ca=ca))
        except ssl.SSLCertVerificationError as e:
            raise ApplianceError(f"{server}'s certificate does not verify against {ca}: {e.verify_message}",
                                 hint="is it the CA that signed the appliance's certificate, and the host name in it?") from None
        except (OSError, ssl.SSLError) as e:
            raise ApplianceError(f"cannot open a TLS connection to {server}: {e}") from None
        import os

        return {"ca": os.path.abspath(ca)}
    seen = tls.fetch_fingerprint(*host_port(server))
    if fingerprint:
        wanted = tls.normalize_fingerprint(fingerprint)
        if wanted != seen:
            raise CertificateChanged(f"{server} presents {seen}, not the fingerprint you gave ({wanted}); nothing was sent",
                                     hint="check the fingerprint with the admin ('appliance doctor' on the server)")
        return {"fingerprint": seen}
    if pinned_before:
        if pinned_before != seen:
            raise changed_error(server, pinned_before, seen)
        return {"fingerprint": seen}
    if system_trusts(server):
        return {}
    if ask is None:
        raise ApplianceError(f"{server} presents a certificate no trusted authority signed ({seen})",
                             hint=f"compare it with what scripts/install printed or 'appliance doctor' shows, then "
                                  f"run 'appliance login {server} --fingerprint {seen}' (or --ca FILE)")
    if not ask(seen):
        raise ApplianceError("certificate not trusted: nothing stored",
                             hint="compare the fingerprint with 'appliance doctor' on the server and try again")
    return {"fingerprint": seen}
