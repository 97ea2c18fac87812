"""What a provider's screen feels while EHRs send a burst (issue 9: the cost of router and notify yielding
the CPU to intake on one machine, services/launcher.py).

Starts the system as `pathways up` does, then asks notify for the sample provider's newest offers
(`GET /offers?_count=20`, what the inbox polls) every 100 ms: first while the system is quiet, then while
wrk drives intake with 16 connections. Reports the provider's latency for both, and intake's rate.

    .venv/bin/python bench/provider_during_burst.py [--seconds 20] [--connections 16] [--nice N]

``--nice`` sets PATHWAYS_BACKGROUND_NICE for this run (0: router and notify share the CPU equally).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from support import (
    PROVIDER_KEY,
    WrkResult,
    ensure_wrk,
    percentile,
    referral_template,
    run_wrk,
    running_system,
    table,
)

os.environ.setdefault("PATHWAYS_RATE_LIMITS", '{"ehr-client": ""}')  # one EHR client drives the burst


def sample(url: str, seconds: float, stop: threading.Event | None = None) -> list[float]:
    """Milliseconds per GET, one every 100 ms, for ``seconds`` (or until ``stop``)."""
    took: list[float] = []
    headers = {"Authorization": f"Bearer {PROVIDER_KEY}"}
    with httpx.Client(timeout=10) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (stop and stop.is_set()):
            start = time.perf_counter()
            answer = client.get(f"{url}/offers", params={"_count": 20}, headers=headers)
            took.append((time.perf_counter() - start) * 1000)
            if answer.status_code != 200:
                raise RuntimeError(f"GET /offers answered {answer.status_code}")
            time.sleep(max(0.0, 0.1 - (time.perf_counter() - start)))
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--nice", type=int, default=None, help="PATHWAYS_BACKGROUND_NICE for this run")
    args = parser.parse_args()
    if args.nice is not None:
        os.environ["PATHWAYS_BACKGROUND_NICE"] = str(args.nice)
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="pathways-provider-") as tmp_name:
        tmp = Path(tmp_name)
        template = referral_template(tmp)
        with running_system(tmp) as system:
            notify = system.url("notify")
            sample(notify, 3)  # warm-up: connections, caches
            quiet = sample(notify, args.seconds / 2)
            burst: dict[str, WrkResult] = {}

            def drive() -> None:
                burst["wrk"] = run_wrk(system.url("intake"), connections=args.connections, seconds=args.seconds,
                                       template=template, tag="provider-burst", target="intake")

            driver = threading.Thread(target=drive)
            driver.start()
            time.sleep(1)  # wrk's connections open
            busy = sample(notify, args.seconds - 2)
            driver.join()
            nice = system.background_nice
    intake = burst["wrk"]
    print(f"router and notify at nice {nice}; intake under wrk, {args.connections} connections: "
          f"{intake.rate:.0f} referrals/s, p99 {intake.p99_ms:.0f} ms, {intake.accepted} answered 202")
    rows = [[name, len(t), f"{percentile(t, 50):.1f}", f"{percentile(t, 95):.1f}", f"{percentile(t, 99):.1f}",
             f"{max(t):.1f}"] for name, t in (("quiet", quiet), ("during the burst", busy))]
    print(table(["provider GET /offers?_count=20", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
