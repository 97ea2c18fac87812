"""What the one scrubber costs per log line (issue 13): a request's access-log line and a consumer's
warning, formatted as the services format them (``PathwaysJsonFormatter``), with the scrubber and with
it replaced by a no-op.

    .venv/bin/python bench/log_scrub.py [--lines 100000]
"""

from __future__ import annotations

import argparse
import logging
import time

from unittest import mock

from shared import logs
from shared.logs import PathwaysJsonFormatter
from shared.scrub import scrub


def records() -> list[logging.LogRecord]:
    access = logging.LogRecord("pathways.access", logging.INFO, __file__, 1, "%s %s %d %.1f ms",
                               ("POST", "/fhir/Bundle", 202, 12.345), None)
    access.http_route = "/fhir/Bundle"  # type: ignore[attr-defined]
    warning = logging.LogRecord("shared.bus", logging.WARNING, __file__, 1,
                                "bus %s: %s failed on event %s (delivery %d): %s",
                                ("pathways-router", "router-referrals", "0b7c4a44-8f38-4bd4-9a35-4f5d1b6e1b6a", 2,
                                 "TimeoutError"), None)
    return [access, warning]


def per_line(formatter: logging.Formatter, lines: int) -> float:
    batch = records()
    start = time.perf_counter()
    for i in range(lines):
        formatter.format(batch[i % 2])
    return (time.perf_counter() - start) / lines * 1e6


def _same(value: object) -> object:
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    lines = parser.parse_args().lines
    formatter = PathwaysJsonFormatter("intake")
    # Interleaved rounds, best of each: a shared machine's noise hits both alike.
    off, on = [], []
    for _ in range(5):
        with mock.patch.multiple(logs, scrub=_same, scrub_exception=_same, scrub_value=_same):
            off.append(per_line(formatter, lines // 5))
        on.append(per_line(formatter, lines // 5))
    print(f"format, scrubber off: {min(off):6.2f} µs/line (best of 5)")
    print(f"format, scrubber on:  {min(on):6.2f} µs/line (best of 5)")
    text = "POST /fhir/Bundle 202 12.3 ms"
    start = time.perf_counter()
    for _ in range(lines):
        scrub(text)
    print(f"scrub() alone, access line: {(time.perf_counter() - start) / lines * 1e6:6.2f} µs/line")


if __name__ == "__main__":
    main()
