"""Control's side of joining a worker host (`appliance worker --join URL --token T`).

An admin mints a join token on control (`appliance host join-token`, or Admin → Hosts): random,
single-use, expiring, shown once; only its SHA-256 is stored. The new host presents it over HTTPS
(the worker pins control's certificate) to `POST /api/v1/cluster/join` and receives what makes it a
worker: the shared database URL, cluster_mode on, its host id, and a credential of its own with
which it later pulls images from control (appliance/cluster/images.py). A wrong token counts against the
caller's address like a wrong password (appliance/accounts/signin.py), so guessing gets the
address blocked; the token itself is never logged.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance_base.config import Config

from ..accounts import signin
from ..accounts.models import hash_token
from ..db import database, utcnow
from ..errors import ApplianceError, Conflict, Invalid
from .models import Host, HostCredential, JoinToken

PREFIX = "apj_"
CREDENTIAL_PREFIX = "aph_"
DEFAULT_TTL_MINUTES = 60
MAX_TTL_MINUTES = 7 * 24 * 60
JOIN_USERNAME = "(host join)"  # how join attempts appear in the sign-in audit
HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class JoinRefused(ApplianceError):
    """The token is missing, unknown, expired or used: nothing is issued. `status` is the HTTP answer."""

    def __init__(self, message: str, hint: str = "", status: int = 401):
        super().__init__(message, hint=hint)
        self.status = status


class TooManyFailures(JoinRefused):
    def __init__(self, refusal: signin.Refusal):
        super().__init__(refusal.message, hint="wait, then join with a fresh token from an admin", status=429)
        self.retry_after = refusal.retry_after()


NEW_TOKEN_HINT = "ask an admin for a new one: `appliance host join-token` on control, or Admin → Hosts"


def require_clustered(config: Config) -> None:
    """Joining needs control to run clustered on PostgreSQL (the database it hands to workers)."""
    if not config.clustered:
        raise Conflict("this appliance is one server (cluster_mode is \"off\"): it cannot take worker hosts",
                       hint="on control set database_url = \"postgresql://USER@HOST/DB\" and cluster_mode = \"on\" "
                            "(README \"More than one server\"), restart it, then mint a join token")


def mint(config: Config, created_by: str, ttl_minutes: int | None = None) -> tuple[str, JoinToken]:
    """A new join token (shown once) and its row."""
    require_clustered(config)
    ttl = DEFAULT_TTL_MINUTES if ttl_minutes is None else ttl_minutes
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL_MINUTES:
        raise Invalid(f"a join token lives 1 to {MAX_TTL_MINUTES} minutes, not {ttl!r}",
                      hint=f"the default is {DEFAULT_TTL_MINUTES}")
    token = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = JoinToken.create(token_hash=hash_token(token), created_at=now, expires_at=now + dt.timedelta(minutes=ttl),
                           created_by=created_by)
    return token, row


@dataclass(frozen=True)
class Grant:
    """What a joined host needs to be a worker (written into its config file)."""

    host_id: str
    database_url: str
    host_credential: str = ""
    cluster_mode: str = "on"

    def as_dict(self) -> dict:
        return {"host_id": self.host_id, "database_url": self.database_url, "cluster_mode": self.cluster_mode,
                "host_credential": self.host_credential}


def control_url(config: Config, request_url: str = "") -> str:
    """How worker hosts reach control: public_url, else the URL the admin reached it at, else a guess."""
    if config.public_url:
        return config.public_url.rstrip("/")
    if request_url:
        return request_url.rstrip("/")
    scheme = "https" if config.tls_cert else "http"
    return f"{scheme}://{socket.getfqdn()}:{config.listen_port}"


def join_command(config: Config, token: str, request_url: str = "") -> str:
    """The exact command to run on the new host (with control's certificate pinned when it has one)."""
    command = f"appliance worker --join {control_url(config, request_url)} --token {token}"
    if config.tls_cert:
        from .. import tls

        command += f" --fingerprint {tls.certificate_info(config.tls_cert).fingerprint}"
    return command


def worker_database_url(config: Config) -> str:
    """The database URL a joining host gets: worker_database_url as the admin set it, else control's
    own database_url, unless that only works on control itself (localhost or a socket)."""
    if config.worker_database_url:
        return config.worker_database_url
    url = config.database_url
    host = urlsplit(url).hostname or ""
    if host in ("", "localhost", "127.0.0.1", "::1"):
        raise Conflict(f"control's database URL names no address a worker host can reach ({host or 'a local socket'})",
                       hint="set worker_database_url = \"postgresql://USER:PASSWORD@CONTROL-ADDRESS/DB\" on control "
                            "(how workers reach its PostgreSQL)")
    return url


def redeem(config: Config, token: str, host_id: str, address: str) -> Grant:
    """Use `token` for host `host_id` (the caller at `address`): the grant, or JoinRefused with
    nothing issued. Refusals are audited against the address; too many of them block it."""
    require_clustered(config)
    policy = signin.SigninPolicy.from_config(config)
    refusal = policy.address_refusal(address)
    if refusal is not None:
        policy.record(JOIN_USERNAME, address, refusal.outcome)
        raise TooManyFailures(refusal)
    if not isinstance(host_id, str) or not HOST_ID.match(host_id):
        raise Invalid(f"host_id must be 1 to 63 letters, digits, '.', '_' or '-', not {host_id!r}",
                      hint="give the worker --host-id NAME (default: its hostname)")
    database_url = worker_database_url(config)
    try:
        with database.atomic():
            _take(token, host_id, config.host_stale_after)
            credential = _issue_credential(host_id)
    except JoinRefused:
        policy.record(JOIN_USERNAME, address, signin.BAD_JOIN_TOKEN)
        raise
    policy.record(JOIN_USERNAME, address, signin.OK)
    return Grant(host_id=host_id, database_url=database_url, host_credential=credential)


def _issue_credential(host_id: str) -> str:
    """A new credential for `host_id` (a host joining again replaces its old one)."""
    credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    HostCredential.delete().where(HostCredential.host_id == host_id).execute()
    HostCredential.create(host_id=host_id, credential_hash=hash_token(credential), issued_at=utcnow())
    return credential


def host_for(credential: str) -> str | None:
    """The joined host this credential belongs to, or None (looked up by SHA-256, like API tokens)."""
    if not credential or not credential.startswith(CREDENTIAL_PREFIX):
        return None
    row = HostCredential.get_or_none(HostCredential.credential_hash == hash_token(credential))
    return row.host_id if row is not None else None


def _take(token: str, host_id: str, stale_after: float) -> JoinToken:
    """Mark the token used by `host_id`, in one conditional UPDATE (two hosts racing with one token:
    one wins). The lookup is by SHA-256, so no comparison leaks how much of a guess was right."""
    if not isinstance(token, str) or not token:
        raise JoinRefused("a join token is required (the \"token\" field)", hint=NEW_TOKEN_HINT)
    row = JoinToken.get_or_none(JoinToken.token_hash == hash_token(token))
    if row is None or not secrets.compare_digest(row.token_hash, hash_token(token)):
        raise JoinRefused("this join token is not valid", hint=NEW_TOKEN_HINT)
    now = utcnow()
    if row.used_at is not None:
        raise JoinRefused("this join token was already used (join tokens work once)", hint=NEW_TOKEN_HINT, status=403)
    if row.expires_at <= now:
        raise JoinRefused("this join token expired", hint=NEW_TOKEN_HINT, status=403)
    live = Host.get_or_none(Host.id == host_id)
    if live is not None and live.alive(stale_after):
        raise Conflict(f"a worker host named {host_id!r} is running already",
                       hint="give the new host another --host-id, or stop the old one and wait until it is silent")
    taken = JoinToken.update(used_at=now, used_by_host=host_id).where(
        (JoinToken.id == row.id) & JoinToken.used_at.is_null()).execute()
    if not taken:
        raise JoinRefused("this join token was already used (join tokens work once)", hint=NEW_TOKEN_HINT, status=403)
    return row

