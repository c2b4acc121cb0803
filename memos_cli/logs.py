"""Logging set-up for the commands: plain lines on a terminal, JSON lines otherwise (journald, files).

Three rules hold at every level, `debug` included:
- libraries log below WARNING only to nobody: at debug they print SQL with its parameters (memory content,
  token hashes) and request bodies; memos' own loggers never log content or tokens;
- every line, traceback included, has tokens, keys and token hashes masked (`daemon.redaction`);
- a message repeated in a burst (an accept error under a connection flood) is logged a few times per
  minute, and the next one that passes says how many were held back.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from daemon import LOG_PATTERNS, Redactor

_OWN_LOGGERS = ("daemon", "mcp_server", "memos_cli", "memosd", "memos")
_MASK = Redactor(builtin=LOG_PATTERNS)
REPEATS_PER_WINDOW = 5
REPEAT_WINDOW_S = 60.0


def _own(name: str) -> bool:
    return any(name == own or name.startswith(own + ".") for own in _OWN_LOGGERS)


class _OwnOrWarning(logging.Filter):
    """Records of other libraries pass from WARNING up only, whatever the configured level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or _own(record.name)


class RepeatLimit(logging.Filter):
    """At most `burst` records with the same logger, level and first line of the message template per
    `window_s` (values filled in do not make a message new); the rest are counted, and the first record of
    the next window says how many were held back. The request log (one line per request) is not limited."""

    def __init__(
        self,
        burst: int = REPEATS_PER_WINDOW,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._burst, self._window_s, self._clock = burst, window_s, clock
        self._windows: dict[tuple[str, int, str], list[float]] = {}  # key -> [start, passed, held back]
        self._lock = threading.Lock()  # records arrive from worker threads too

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "request_id"):  # the request log is one line per request by design
            return True
        key = (record.name, record.levelno, str(record.msg).split("\n", 1)[0])
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self._window_s:
                held = int(window[2]) if window else 0
                if len(self._windows) > 1000:  # many distinct messages: forget the old windows
                    self._windows.clear()
                window = self._windows[key] = [now, 0, 0]
                if held:
                    record.msg = f"{record.msg} ({held} more like this held back in the last minute)"
            window[1] += 1
            if window[1] > self._burst:
                window[2] += 1
                return False
            return True


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _MASK.text(super().format(record))


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
        return json.dumps({key: _MASK.value(value) for key, value in entry.items()}, ensure_ascii=False)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(
            _MaskingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    else:
        handler.setFormatter(_JsonFormatter())
    handler.addFilter(_OwnOrWarning())
    handler.addFilter(RepeatLimit())
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
