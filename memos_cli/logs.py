"""Logging set-up for the commands: plain lines on a terminal, JSON lines otherwise (journald, files)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_EXTRA_FIELDS = ("request_id", "agent", "method", "target", "outcome", "latency_ms")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    else:
        handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK and uvicorn are chatty at INFO about every request.
    for noisy in ("mcp", "uvicorn.error", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _route_loguru()


def _route_loguru() -> None:
    """fastembed logs through loguru, straight to stderr; send its warnings through our handler instead."""
    try:
        from loguru import logger
    except ImportError:
        return

    def forward(message: Any) -> None:
        record = message.record
        logging.getLogger(record["name"] or "loguru").log(record["level"].no, "%s", record["message"])

    logger.remove()
    logger.add(forward, level="WARNING", format="{message}")
