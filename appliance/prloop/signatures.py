"""Is a webhook delivery really from the repository's forge? Each forge's own scheme:

- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>`,
  delivery id `X-GitHub-Delivery`
- Gitea (and Forgejo): `X-Gitea-Signature: <hex HMAC-SHA256 of the raw body>` (Forgejo also sends
  `X-Forgejo-Signature`), delivery id `X-Gitea-Delivery`
- GitLab: no signature; `X-Gitlab-Token` carries the secret itself. Delivery id
  `X-Gitlab-Event-UUID` (or `Idempotency-Key`, sent by newer GitLab and the same on retries)

Comparisons are constant-time (hmac.compare_digest); a missing header is a refusal, never a pass.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

FORGES = ("github", "gitlab", "gitea")


class BadSignature(Exception):
    """The delivery is unsigned or not signed with the repository's secret."""


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(forge: str, secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise BadSignature unless `body` came with `forge`'s proof of `secret`."""
    if not secret:
        raise BadSignature("the repository has no webhook secret")
    if forge == "github":
        sent = headers.get("X-Hub-Signature-256", "")
        if not sent.startswith("sha256="):
            raise BadSignature("no X-Hub-Signature-256 header")
        ok = hmac.compare_digest(sent[len("sha256="):].strip().lower(), _hmac_hex(secret, body))
    elif forge == "gitea":
        sent = headers.get("X-Gitea-Signature") or headers.get("X-Forgejo-Signature") or ""
        if not sent:
            raise BadSignature("no X-Gitea-Signature header")
        ok = hmac.compare_digest(sent.strip().lower(), _hmac_hex(secret, body))
    elif forge == "gitlab":
        sent = headers.get("X-Gitlab-Token", "")
        if not sent:
            raise BadSignature("no X-Gitlab-Token header")
        ok = hmac.compare_digest(sent.encode(), secret.encode())
    else:
        raise BadSignature(f"unknown forge {forge!r}")
    if not ok:
        raise BadSignature(f"the {forge} signature does not match the repository's webhook secret")


def delivery_id(forge: str, headers: Mapping[str, str]) -> str:
    """The forge's id of this delivery ("" when it sent none)."""
    names = {"github": ("X-GitHub-Delivery",), "gitea": ("X-Gitea-Delivery", "X-Forgejo-Delivery"),
             "gitlab": ("Idempotency-Key", "X-Gitlab-Event-UUID")}[forge]
    for name in names:
        value = (headers.get(name) or "").strip()
        if value:
            return value[:200]
    return ""


def event_name(forge: str, headers: Mapping[str, str]) -> str:
    name = {"github": "X-GitHub-Event", "gitea": "X-Gitea-Event", "gitlab": "X-Gitlab-Event"}[forge]
    return (headers.get(name) or headers.get("X-Forgejo-Event") or "").strip()
