"""Resident memory of each service before and after many referrals (issue 9).

Starts the system as `pathways up` does (free ports), sends a warm-up, notes each service's RSS, then
sends referrals with wrk in chunks (each chunk followed by a wait until router and notify have done
their share, so the whole pipeline handles every referral), noting RSS at the half-way point and at
the end. A leak shows as growth that goes on in the second half; caches and pools level off early.

Bound (per service): RSS at the end under 300 MiB, and growth over the second half of the run under
10% of the half-way RSS (or 16 MiB, whichever is larger).

    .venv/bin/python bench/memory.py [--referrals 100000] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from services.launcher import SERVICES
from support import postgres_available, quiesce, referral_template, rss_mib, run_wrk, running_system, table

END_BOUND_MIB = 300.0


def second_half_bound(half: float) -> float:
    return max(16.0, 0.10 * half)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--referrals",
        type=int,
        default=3000,
        help="referrals to send (the issue's figure is 100000; the default keeps `make bench` short)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.database == "postgresql" and not postgres_available():
        print("PostgreSQL not reachable: skipped")
        return 0
    with tempfile.TemporaryDirectory(prefix="pathways-memory-") as tmp_name:
        tmp = Path(tmp_name)
        template = referral_template(tmp)
        with running_system(tmp, args.database) as system:
            pids = {s: system.processes[s].pid for s in SERVICES}
            started = {s: rss_mib(p) for s, p in pids.items()}
            run_wrk(
                system.url("intake"), connections=4, seconds=3, template=template, tag="warm", target="intake"
            )
            quiesce(list(pids.values()), limit=600)
            before = {s: rss_mib(p) for s, p in pids.items()}
            sent, chunk, half = 0, 0, None
            while sent < args.referrals:
                result = run_wrk(
                    system.url("intake"),
                    connections=args.connections,
                    seconds=args.chunk_seconds,
                    template=template,
                    tag=f"mem-{chunk}",
                    target="intake",
                )
                sent += result.accepted
                chunk += 1
                quiesce(list(pids.values()), limit=600)
                print(
                    f"  {sent} referrals accepted; RSS MiB "
                    + ", ".join(f"{s} {rss_mib(p):.0f}" for s, p in pids.items()),
                    flush=True,
                )
                if half is None and sent >= args.referrals / 2:
                    half = {s: rss_mib(p) for s, p in pids.items()}
            after = {s: rss_mib(p) for s, p in pids.items()}
    half = half or after
    rows = []
    for s in SERVICES:
        growth = after[s] - half[s]
        ok = after[s] < END_BOUND_MIB and growth < second_half_bound(half[s])
        rows.append(
            [
                s,
                f"{started[s]:.0f}",
                f"{before[s]:.0f}",
                f"{half[s]:.0f}",
                f"{after[s]:.0f}",
                f"{after[s] - before[s]:+.0f}",
                f"{growth:+.0f} (< {second_half_bound(half[s]):.0f})",
                "met" if ok else "MISSED",
            ]
        )
    print()
    print(f"resident memory (MiB), {args.database}, {sent} referrals through the whole pipeline")
    print(
        table(
            [
                "service",
                "at start",
                "after warm-up",
                "half-way",
                "at end",
                "growth",
                "2nd-half growth (bound)",
                f"bound: < {END_BOUND_MIB:g} MiB, 2nd half flat",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
