"""Taking in one webhook delivery: who sent it (the forge's signature with the repository's
secret), whether it was seen before (delivery ids), and what it says.

    status, answer = receive(sessions, "github", repo_id, request.headers, request.get_data())

Refusals: unknown repository or one whose forge is another (404), no or a wrong signature (401),
no delivery id (400), a body that is not JSON in the forge's shape (400). A delivery id seen before
is answered 200 "duplicate" and changes nothing. The delivery is recorded and applied in one
transaction: if applying fails, the forge's retry is not taken for a replay.
"""

from __future__ import annotations

import json
import logging
import secrets

import peewee

from ..db import database
from ..repos.models import Repository
from .apply import Applier
from .events import BadPayload, parse
from .models import ForgeDelivery
from .signatures import FORGES, BadSignature, delivery_id, event_name, verify

log = logging.getLogger(__name__)


def webhook_secret(repo: Repository) -> str:
    """The repository's webhook secret, made (and kept) on first use."""
    if not repo.webhook_secret:
        secret = secrets.token_urlsafe(32)
        Repository.update(webhook_secret=secret).where(
            (Repository.id == repo.id) & (Repository.webhook_secret == "")).execute()
        repo.webhook_secret = Repository.get_by_id(repo.id).webhook_secret
    return repo.webhook_secret


def rotate_webhook_secret(repo: Repository) -> str:
    """A new secret: deliveries signed with the old one are refused from now on."""
    secret = secrets.token_urlsafe(32)
    Repository.update(webhook_secret=secret).where(Repository.id == repo.id).execute()
    repo.webhook_secret = secret
    return secret


def webhook_path(repo: Repository) -> str:
    return f"/hooks/forge/{repo.forge}/{repo.id}"


def receive(sessions, forge: str, repo_id: int, headers, body: bytes) -> tuple[int, dict]:
    repo = Repository.get_or_none(Repository.id == repo_id)
    if forge not in FORGES or repo is None or repo.forge != forge:
        return 404, {"error": "no such webhook"}
    try:
        verify(forge, repo.webhook_secret, headers, body)
    except BadSignature as e:
        log.warning("%s webhook for %s refused: %s", forge, repo.name, e)
        return 401, {"error": "the delivery is not signed with this repository's webhook secret"}
    delivery = delivery_id(forge, headers)
    if not delivery:
        return 400, {"error": "the delivery has no delivery id header"}
    event = event_name(forge, headers)
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return 400, {"error": "the body is not JSON"}
    if isinstance(payload, dict):
        payload["_delivery"] = delivery
    try:
        facts = parse(forge, event, payload)
    except BadPayload as e:
        return 400, {"error": str(e)}
    with database.atomic():
        try:
            with database.atomic():
                ForgeDelivery.create(forge=forge, delivery_id=delivery, repository=repo, event=event[:100])
        except peewee.IntegrityError:
            log.info("%s delivery %s for %s seen before: ignored", forge, delivery, repo.name)
            return 200, {"status": "duplicate"}
        done = Applier(sessions, forge, repo).apply(facts)
    log.info("%s %s delivery %s for %s: %s", forge, event, delivery, repo.name, "; ".join(done) or "nothing to do")
    return 200, {"status": "ok", "event": event, "done": done}
