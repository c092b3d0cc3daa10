"""Redaction of anything credential-shaped, wherever guest output becomes something others read.

A session's events are read by everyone it is shared with, and the daemon's log by its admin;
what an agent prints (`git remote -v`, `env`, a failing curl) must not hand them a credential.
`redact(value)` replaces, inside strings and recursively inside dicts and lists:

- the appliance's own git tokens (`agt_…`), API tokens (`apl_…`), host join tokens (`apj_…`) and host
  credentials (`aph_…`);
- the usual API key and token shapes (Anthropic/OpenAI `sk-…`, GitHub `ghp_…`/`github_pat_…`,
  GitLab `glpat-…`, Slack `xox?-…`, AWS access key ids, `Bearer …` headers);
- the password part of a URL (`scheme://user:password@host`).

This is a second line: the design keeps real credentials out of guests (the egress proxy injects
model keys; git tokens are bound to their guest), so what is redacted here is at worst a
placeholder or a token that works nowhere else.
"""

from __future__ import annotations

import logging
import re

MARK = "[redacted]"

_PATTERNS = [
    # appliance git (agt_), API (apl_), host join (apj_) tokens and host credentials (aph_)
    re.compile(r"\b(?:agt|apl|apj|aph)_[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),  # Anthropic sk-ant-…, OpenAI sk-…/sk-proj-…
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bglpat-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"(?i)(?<=\bbearer )[A-Za-z0-9._~+/\-]{16,}=*"),
]
# scheme://user:password@ — the password goes, the user name and host stay readable
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@]*:)(?P<password>[^\s/@]+)(?=@)")


def redact_text(text: str) -> str:
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MARK, text)
    for pattern in _PATTERNS:
        text = pattern.sub(MARK, text)
    return text


def redact(value):
    """`value` with every credential-shaped string redacted (dicts, lists and tuples walked)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Redacts each record's message (arguments merged in first) and its traceback before any
    handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: leave it to the handler to report
            return True
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:  # formatters print exc_text when it is set
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_filter() -> None:
    """Every handler of the root logger redacts (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
