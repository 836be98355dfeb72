"""Log lines: readable text, or one JSON object per line (``MNEMO_LOG_FORMAT=json``).

Every line Mnemo writes goes through the root logger's handler, formatted here: the access
log (``mnemo.access``, one line per request), error lines, and uvicorn's and gunicorn's own
lines too (their access logs are off: ``mnemo.access`` replaces them). A record may carry
``fields`` (``extra={"fields": {...}}``): in JSON they become keys of the object, in text the
message already says them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "mnemo.access"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, RFC 3339), level, logger, message, the record's
    ``fields``, and the traceback, if any, as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Non-string values a caller passes (an exception, a path object) become their text.
        return orjson.dumps(entry, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, log_format: str) -> None:
    """Send every logger's records to standard error, in ``log_format``, from ``level`` up."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
