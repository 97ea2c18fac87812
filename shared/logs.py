"""Structured logs: one JSON object per line, with the trace and span ids of the work that wrote it.

Every log line of every service goes through ``PathwaysJsonFormatter``; ``log_fields`` is the single
place that decides what a line holds, so a scrubber for identifying data belongs there too. Pathways'
own messages already hold only codes, ids and exception *types*.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

BASE_FIELDS = ("asctime", "levelname", "name", "message")


def log_fields(fields: dict[str, Any], record: logging.LogRecord, service: str) -> dict[str, Any]:
    """What one log line holds: time, level, logger, message, service, and the current trace."""
    fields["service"] = service
    fields.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        fields["trace_id"] = format(context.trace_id, "032x")
        fields["span_id"] = format(context.span_id, "016x")
    return fields


class PathwaysJsonFormatter(JsonFormatter):
    def __init__(self, service: str) -> None:
        super().__init__(
            list(BASE_FIELDS),
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
        self.service = service

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_fields(log_data, record, self.service)


def configure_logging(service: str = "pathways") -> None:
    """JSON lines on stderr for the root logger; uvicorn's loggers pass through it too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PathwaysJsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every URL at INFO; URLs can carry area queries, so keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
