"""A guest's identity: its keys, address and settings, delivered through fw_cfg.

The base image holds no keys and no address. Each sandbox gets its own SSH client key (kept on the
host), its own SSH host key (so the host can pin it: no trust-on-first-use), its address, resolver
and proxy. The guest's `appliance-guest-identity` (vmimages/guest/) reads the JSON and applies it;
it can be re-applied later over a channel, which is what warm starts will do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# fw_cfg entries keep their first size across a save/restore: every identity blob is this size.
IDENTITY_SIZE = 8192
IDENTITY_VERSION = 1


@dataclass(frozen=True)
class KeyPair:
    private_openssh: str
    public_openssh: str


def generate_keypair(comment: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(private, f"{public} {comment}")


@dataclass(frozen=True)
class GuestIdentity:
    hostname: str
    user: str
    authorized_keys: list[str]
    host_key: str
    address: str  # CIDR, e.g. 10.213.0.5/24
    gateway: str
    dns: list[str]
    proxy: dict[str, str] | None = None
    ca_certs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def to_blob(self) -> bytes:
        doc = {"version": IDENTITY_VERSION, **self.__dict__}
        raw = json.dumps(doc, separators=(",", ":")).encode()
        if len(raw) > IDENTITY_SIZE:
            raise ValueError(f"guest identity is {len(raw)} bytes, more than the fixed {IDENTITY_SIZE}")
        return raw.ljust(IDENTITY_SIZE, b" ")


def write_private(path: Path, data: bytes | str) -> None:
    """Write a file only root can read, without a moment where it is readable by others."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
