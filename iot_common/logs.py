"""Logging of every service: one JSON object a line (LOG_FORMAT=json, the default) or
plain text for a person at a terminal (LOG_FORMAT=text), at LOGGING_LEVEL.

A JSON line always has `ts` (UTC, ISO-8601 with milliseconds), `level`, `logger` and
`msg`; `exc` holds a traceback when there is one, and `extra={...}` fields of a
call are kept under their own names. A line never spans two lines, whatever a
message holds (newlines are escaped), so a log shipper can split on newlines.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What a LogRecord carries by itself: anything else came in through `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A record -> one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        return orjson.dumps(doc, default=repr).decode()


def dict_config(level: str, fmt: LogFormat = "json") -> dict[str, Any]:
    """A `logging.config.dictConfig` for a service (also what Faust's worker takes)."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
        # Access logs of health probes would flood the log.
        "loggers": {"aiohttp.access": {"level": "WARNING"}},
    }


def configure(level: str, fmt: LogFormat = "json") -> None:
    """Set up the root logger of this process."""
    logging.config.dictConfig(dict_config(level, fmt))
