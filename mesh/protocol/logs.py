"""Logging for mesh processes: text or JSON lines (MESH_LOG_FORMAT=json), with the trace
and span ids of the current span on every line written inside one.

Written here rather than taken from opentelemetry-instrumentation-logging: that package only
adds the ids as record attributes (through a global record factory); the formatting, which
is the part users see, would still be ours.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace


def _span_ids() -> tuple[str, str] | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [trace_id=... span_id=...]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _span_ids()
        return f"{line} trace_id={ids[0]} span_id={ids[1]}" if ids else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id, span_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = _span_ids()
        if ids:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, log_format: str) -> None:
    """Send logs to stderr as text or JSON; `log_format` is "text" or "json"."""
    if log_format not in ("text", "json"):
        raise ValueError(f"MESH_LOG_FORMAT is {log_format!r}; expected 'text' or 'json'")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
