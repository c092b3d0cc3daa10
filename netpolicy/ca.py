"""The appliance's interception CA: mitmproxy's confdir under `<state_dir>/egress/ca`.

The proxy signs certificates for the hosts it intercepts (those with injected credentials, and
refused TLS connections so the guest can read the 403) with this CA; the guest trusts it because
its certificate is installed into the guest's trust store at boot (`guest_settings()["ca_certs"]`).
The private key stays in the confdir, mode 0600, and never leaves the host.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from mitmproxy.certs import CertStore

BASENAME = "mitmproxy"  # mitmproxy looks for <confdir>/mitmproxy-ca.pem
ORGANIZATION = "Appliance"
COMMON_NAME = "Appliance egress CA"
KEY_SIZE = 2048
RENEW_BEFORE = dt.timedelta(days=30)


def key_path(confdir: Path) -> Path:
    return Path(confdir) / f"{BASENAME}-ca.pem"


def cert_path(confdir: Path) -> Path:
    return Path(confdir) / f"{BASENAME}-ca-cert.pem"


def ensure_ca(confdir: str | os.PathLike) -> Path:
    """Create the CA in `confdir` unless a valid one is there; return the certificate's path.

    A CA that expires within RENEW_BEFORE is replaced (guests get the new one at their next boot).
    """
    confdir = Path(confdir)
    confdir.mkdir(parents=True, exist_ok=True)
    os.chmod(confdir, 0o700)
    if key_path(confdir).exists() and cert_path(confdir).exists():
        cert = x509.load_pem_x509_certificate(cert_path(confdir).read_bytes())
        if cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > RENEW_BEFORE:
            os.chmod(key_path(confdir), 0o600)
            return cert_path(confdir)
        for p in confdir.glob(f"{BASENAME}-*"):
            p.unlink()
    CertStore.create_store(confdir, BASENAME, KEY_SIZE, organization=ORGANIZATION, cn=COMMON_NAME)
    for p in confdir.glob(f"{BASENAME}-ca*"):
        if p.name.endswith(("-ca.pem", "-ca.p12")):
            os.chmod(p, 0o600)
    return cert_path(confdir)


def ca_cert_pem(confdir: str | os.PathLike) -> str:
    """The CA certificate (public part only), PEM text."""
    return cert_path(Path(confdir)).read_text()
