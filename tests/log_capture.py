"""Every log line of every logger, formatted as the services format them (through the scrubber)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from shared.logs import PathwaysJsonFormatter

# Loggers the tests write through. Another test may have configured them as uvicorn does (their own
# handlers, no propagation) or disabled them; a service's configure_logging routes them all to the root.
_ROUTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "sqlalchemy.engine", "httpx", "shared",
           "services", "pathways", "py.warnings")


@contextmanager
def captured_logs(service: str = "intake") -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PathwaysJsonFormatter(service))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    loggers = [logging.getLogger(name) for name in _ROUTED]
    saved_loggers = [(lg.handlers[:], lg.propagate, lg.disabled, lg.level) for lg in loggers]
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for lg in loggers:
        lg.handlers[:], lg.propagate, lg.disabled = [], True, False
        lg.setLevel(logging.NOTSET)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for lg, (handlers, propagate, disabled, lg_level) in zip(loggers, saved_loggers, strict=True):
            lg.handlers[:], lg.propagate, lg.disabled = handlers, propagate, disabled
            lg.setLevel(lg_level)


def assert_none_logged(stream: io.StringIO, values: tuple[str, ...]) -> None:
    text = stream.getvalue()
    assert text, "nothing was logged"
    for value in values:
        assert value not in text, f"{value!r} reached a log line: {text}"
