"""Log output: text for people, or one JSON object per line for collectors (`log_format`)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback

from appliance_base.config import Config


class JsonLogFormatter:
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the exception."""

    def format(self, record) -> str:
        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(cfg: Config) -> None:
    """Apply `log_format` to the root logger's handlers (call once logging is set up, e.g. in serve)."""
    if cfg.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLogFormatter())  # type: ignore[arg-type]
