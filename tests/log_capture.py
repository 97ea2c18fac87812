"""Every log line of every logger, formatted as the services format them (through the scrubber)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from shared.logs import PathwaysJsonFormatter


@contextmanager
def captured_logs(service: str = "intake") -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PathwaysJsonFormatter(service))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # As the services run (shared.logs.configure_logging): uvicorn's loggers pass through the root, even
    # after an in-process uvicorn server earlier in the run set their handlers and levels.
    uvicorn = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved_uvicorn = [(logger.handlers[:], logger.propagate, logger.disabled, logger.level) for logger in uvicorn]
    for logger in uvicorn:
        logger.handlers[:] = []
        logger.propagate = True
        logger.disabled = False
        logger.setLevel(logging.NOTSET)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for logger, (handlers, propagate, disabled, level) in zip(uvicorn, saved_uvicorn, strict=True):
            logger.handlers[:], logger.propagate, logger.disabled = handlers, propagate, disabled
            logger.setLevel(level)


def assert_none_logged(stream: io.StringIO, values: tuple[str, ...]) -> None:
    text = stream.getvalue()
    assert text, "nothing was logged"
    for value in values:
        assert value not in text, f"{value!r} reached a log line: {text}"
