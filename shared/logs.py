"""Structured logs: one JSON object per line, with the trace and span ids of the work that wrote it.

Every log line of every service goes through ``PathwaysJsonFormatter``; ``log_fields`` is the single
place that decides what a line holds, and it passes every string through the one scrubber
(``shared.scrub``). Pathways' own messages already hold only codes, ids and exception *types*; a
library's message (uvicorn's, SQLAlchemy's, asyncio's), a traceback and a stack are text made from
whatever data the library was given, so they get the strong scrubber, which also takes every quoted value.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from shared.scrub import scrub, scrub_exception, scrub_traceback, scrub_value, withhold_messages

BASE_FIELDS = ("asctime", "levelname", "name", "message")
# Fields this module writes itself from values that cannot hold data: not scrubbed (the scrubber is cheap,
# but it runs on every line).
_OWN_FIELDS = frozenset({"asctime", "time", "levelname", "level", "name", "logger", "service", "trace_id", "span_id",
                         # The access log's (shared.metrics) method and numbers; its route is scrubbed.
                         "http_method", "http_status", "duration_ms"})
_TRACEBACKS = ("exc_info", "stack_info")
# Loggers whose messages Pathways writes (codes, ids, exception types): the ordinary scrubber suffices.
_OWN_LOGGERS = ("services.", "shared.", "pathways")


def log_fields(fields: dict[str, Any], record: logging.LogRecord, service: str) -> dict[str, Any]:
    """What one log line holds: time, level, logger, message, service, and the current trace; every other
    value scrubbed of identifying data."""
    fields.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    # A message that formats an exception (``%s`` of ``exc``) quotes what that exception quotes.
    raised = [arg for arg in record.args if isinstance(arg, BaseException)] if isinstance(record.args, tuple) else []
    own = record.name.startswith(_OWN_LOGGERS) and not raised
    for exc in raised:
        if isinstance(fields.get("message"), str):
            fields["message"] = withhold_messages(fields["message"], exc, qualified=False)
    for key, value in fields.items():
        if key in _OWN_FIELDS:
            continue
        if key in _TRACEBACKS or (key == "message" and not own):
            fields[key] = scrub_exception(value) if isinstance(value, str) else scrub_value(value)
        else:
            fields[key] = scrub(value) if isinstance(value, str) else scrub_value(value)
    fields["service"] = service
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

    def formatException(self, ei: Any) -> str:
        return scrub_traceback(super().formatException(ei), ei[1] if isinstance(ei, tuple) else None)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_fields(log_data, record, self.service)


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("pathways").critical("uncaught %s: the process stops", kind.__name__,
                                           exc_info=(kind, value, tb))


def configure_logging(service: str = "pathways") -> None:
    """JSON lines on stderr for the root logger; uvicorn's loggers pass through it too, and so does an
    exception nothing caught (a bad setting at start-up would otherwise print its value to stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PathwaysJsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    sys.excepthook = _log_uncaught
    # Python's warnings too (a library's warning can quote a value), as JSON lines through the scrubber.
    logging.captureWarnings(True)
    # httpx logs every URL at INFO; URLs can carry area queries, so keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
