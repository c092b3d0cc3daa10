"""Telling the owner a turn ended: their webhook (JSON POST) and, when SMTP is configured, an
e-mail. Best effort: a dead webhook or mail server is logged and never fails the turn."""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from email.message import EmailMessage

from appliance_base.config import Config

from .models import Session

log = logging.getLogger(__name__)


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
            req = urllib.request.Request(owner.webhook_url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "appliance"})
            urllib.request.urlopen(req, timeout=10).close()
        except Exception as e:
            log.warning("webhook for %s failed: %s", owner.username, e)
    if owner.email and config.smtp_host:
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
