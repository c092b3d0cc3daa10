"""Telling the owner a turn ended: their webhook (JSON POST, only to public addresses, no redirects:
see webhook.py) and, when SMTP is configured, an e-mail to their one address. Best effort: a dead
webhook or mail server is logged and never fails the turn."""

from __future__ import annotations

import json
import logging
import re
import smtplib
from email.message import EmailMessage

from appliance_base.config import Config

from . import webhook
from .models import Session

log = logging.getLogger(__name__)

# One plain address (local@domain): no lists, display names, comments or header tricks, so a
# notification goes to exactly the one person who set it.
_ONE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


def is_one_address(text: str) -> bool:
    return bool(_ONE_ADDRESS.fullmatch(text)) and len(text) <= 254


def note(config: Config, session: Session, turn_number: int, ok: bool) -> dict:
    base = config.public_url.rstrip("/") or f"http://{config.listen_host}:{config.listen_port}"
    return {"session": session.id, "turn": turn_number, "ok": ok, "status": session.status,
            "title": session.title, "repository": session.repository.name, "branch": session.work_branch,
            "diff": {"added": session.diff_added, "removed": session.diff_removed},
            "error": session.error if not ok else None, "url": f"{base}/sessions/{session.id}"}


def turn_ended(config: Config, session_id: str, turn_number: int, ok: bool) -> None:
    session = Session.get_by_id(session_id)
    owner = session.owner
    body = note(config, session, turn_number, ok)
    if owner.webhook_url:
        try:
            status = webhook.post_json(owner.webhook_url, json.dumps(body).encode(), config.webhook_allowed_networks)
            if status >= 300:
                log.warning("webhook for %s answered HTTP %d%s", owner.username, status,
                            " (redirects are not followed)" if 300 <= status < 400 else "")
        except Exception as e:
            log.warning("webhook for %s failed: %s", owner.username, e)
    if owner.email and config.smtp_host and not is_one_address(owner.email):
        log.warning("mail to %s not sent: not exactly one e-mail address", owner.username)
    elif owner.email and config.smtp_host:
        mail = EmailMessage()
        mail["From"] = config.smtp_from
        mail["To"] = owner.email
        outcome = "is waiting for you" if ok else "failed"
        mail["Subject"] = f"[appliance] {session.title[:60]} {outcome}"
        mail.set_content(f"Turn {turn_number} of {session.id} on {body['repository']} {outcome}.\n"
                         f"Diff: +{session.diff_added} -{session.diff_removed} on {session.work_branch}\n"
                         + (f"Error: {session.error}\n" if not ok else "") + f"\n{body['url']}\n")
        try:
            with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=10) as smtp:
                smtp.send_message(mail)
        except Exception as e:
            log.warning("mail to %s failed: %s", owner.email, e)
