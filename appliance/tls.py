"""The console's TLS certificate: a self-signed one for a fresh install, its SHA-256 fingerprint
(what `appliance login` pins and `appliance doctor` shows), and the server's SSL context.

Fingerprints are written like OpenSSH's: `SHA256:` + the hex digest of the DER certificate in
colon-separated pairs, so people can compare what the installer printed with what a browser shows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from .errors import ApplianceError

VALID_DAYS = 825  # the longest validity browsers accept for a server certificate


@dataclass(frozen=True)
class CertInfo:
    fingerprint: str
    not_after: dt.datetime
    names: tuple[str, ...]


def fingerprint_of_der(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """Accept what people paste: with or without `SHA256:`, colons, spaces, any case."""
    raw = text.strip()
    if raw.upper().startswith("SHA256:"):
        raw = raw[len("SHA256:"):]
    raw = raw.replace(":", "").replace(" ", "").upper()
    if len(raw) != 64 or any(c not in "0123456789ABCDEF" for c in raw):
        raise ApplianceError(f"not a SHA-256 fingerprint: {text!r}",
                             hint="paste it as the installer or 'appliance doctor' printed it (SHA256:AB:CD:…)")
    return "SHA256:" + ":".join(raw[i:i + 2] for i in range(0, 64, 2))


def host_names() -> list[str]:
    """The names a self-signed certificate is made for: this host's names and loopback."""
    names: list[str] = []
    for name in (socket.getfqdn(), socket.gethostname(), "localhost", "127.0.0.1", "::1"):
        if name and name not in names:
            names.append(name)
    return names


def generate_self_signed(cert_path: Path, key_path: Path, names: list[str], days: int = VALID_DAYS) -> CertInfo:
    """A new ECDSA P-256 key (0600) and a self-signed certificate for `names` (DNS names or IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not names:
        raise ApplianceError("a certificate needs at least one host name")
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "appliance (self-signed)")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return certificate_info(cert_path)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def certificate_info(cert_path: Path | str) -> CertInfo:
    """The fingerprint, expiry and names of the first certificate in a PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except FileNotFoundError:
        raise ApplianceError(f"{cert_path}: no such certificate file",
                             hint="fix tls_cert in the config, or run 'appliance tls init'") from None
    except ValueError as e:
        raise ApplianceError(f"{cert_path}: not a PEM certificate ({e})", hint="tls_cert must name a PEM file") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(v) for v in san.get_values_for_type(x509.DNSName)) + tuple(
            str(v) for v in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names = ()
    return CertInfo(fingerprint=fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER)),
                    not_after=cert.not_valid_after_utc, names=names)


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """TLS 1.2+ with the certificate and key; a clear error when they do not load or match."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as e:
        raise ApplianceError(f"cannot load the TLS certificate {cert_path} with key {key_path}: {e}",
                             hint="tls_cert/tls_key must be readable PEM files that belong together") from None
    return ctx


def peer_fingerprint(sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    if not der:
        raise ApplianceError("the server sent no certificate")
    return fingerprint_of_der(der)


class PinnedContext(ssl.SSLContext):
    """A client context that accepts exactly one certificate, whoever signed it: the check runs
    right after the handshake, inside wrap_socket, so urllib, http.client and simple-websocket all
    send nothing to another one. `mismatch(seen)` makes the exception to raise."""

    pin: str = ""

    def mismatch(self, seen: str) -> Exception:
        return ApplianceError(f"the server presents certificate {seen}, not the expected {self.pin}")

    def wrap_socket(self, *args, **kwargs):
        sock = super().wrap_socket(*args, **kwargs)
        seen = peer_fingerprint(sock)
        if seen != self.pin:
            sock.close()
            raise self.mismatch(seen)
        return sock


def pinned_context(fingerprint: str, mismatch=None) -> PinnedContext:
    ctx = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the pin is stronger than a name: it is the certificate itself
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.pin = normalize_fingerprint(fingerprint)
    if mismatch is not None:
        ctx.mismatch = mismatch
    return ctx


def fetch_fingerprint(host: str, port: int, timeout: float = 10.0) -> str:
    """The fingerprint of the certificate a server presents (unverified: for showing and pinning)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            return peer_fingerprint(tls)
    except (OSError, ssl.SSLError) as e:
        raise ApplianceError(f"cannot open a TLS connection to {host}:{port}: {e}",
                             hint="is the URL right, and does the appliance serve HTTPS there?") from None
