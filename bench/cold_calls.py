"""What one call costs when calls come one at a time (issue 9): why every service costs two to three times
more CPU per referral at 50 referrals/s than in a burst.

At a steady rate each service wakes for one event at a time, every ~20 ms, and runs its code once. This
measures the CPU time (``time.thread_time``) of one call of intake's Bundle parsing and validation
(``parse_bundle``, the request path's largest item: many objects, much code) on the example referral,
back to back and with a pause before each call, sleeping or spinning. A plain arithmetic loop (little code,
no memory) is the control. When the call costs more after a pause whatever the process did meanwhile, and
the control does not, the difference is the machine's caches losing the call's code and data between
calls, not work the code does: no code change removes it except doing less.

    .venv/bin/python bench/cold_calls.py [--calls 40]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from support import EXAMPLE, table

from services.intake.domain import parse_bundle

GAPS_MS = (0, 5, 20, 50, 200)


def arithmetic(_: Any) -> int:
    total = 0
    for i in range(20_000):
        total += i * i
    return total


def pause(seconds: float, *, spin: bool) -> None:
    if not seconds:
        return
    if spin:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    else:
        time.sleep(seconds)


def median_cpu_us(call: Callable[[Any], Any], inputs: list[Any], gap_s: float, *, spin: bool) -> float:
    spent = []
    for value in inputs:
        pause(gap_s, spin=spin)
        started = time.thread_time_ns()
        call(value)
        spent.append((time.thread_time_ns() - started) / 1000)
    spent.sort()
    return spent[len(spent) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=40, help="calls per pause length (back to back: 5×)")
    args = parser.parse_args()
    body = json.loads(EXAMPLE.read_text())
    for _ in range(50):  # warm-up: imports, caches, the interpreter's specialisations
        parse_bundle(copy.deepcopy(body))
    rows = []
    for gap_ms in GAPS_MS:
        count = 5 * args.calls if gap_ms == 0 else args.calls
        for spin in (False, True) if gap_ms else (False,):
            fresh = [copy.deepcopy(body) for _ in range(count)]
            parsing = median_cpu_us(parse_bundle, fresh, gap_ms / 1000, spin=spin)
            control = median_cpu_us(arithmetic, [None] * count, gap_ms / 1000, spin=spin)
            rows.append([
                "back to back" if gap_ms == 0 else f"{gap_ms} ms {'spinning' if spin else 'asleep'}",
                f"{parsing:.0f}",
                f"{control:.0f}",
            ])
    print("CPU µs per call (median), by what the process did before each call")
    print(table(["before each call", "parse_bundle (the example referral)", "arithmetic loop (control)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
