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
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def assert_none_logged(stream: io.StringIO, values: tuple[str, ...]) -> None:
    text = stream.getvalue()
    assert text, "nothing was logged"
    for value in values:
        assert value not in text, f"{value!r} reached a log line: {text}"
