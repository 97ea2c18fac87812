"""CPU per referral, per service (issue 9): where the pipeline's cost goes, as a figure that holds up on a
shared machine (CPU seconds from /proc, not wall time).

Starts the system as `pathways up` does (free ports), warms it up, posts distinct referrals at a fixed
concurrency, waits until every service is idle again (router, notify and intake's own consumers have
finished the downstream work), and divides each process's CPU time over the round by the referrals
accepted. With ``--intake-only`` router and notify are paused (SIGSTOP) while the referrals are posted,
so intake's figure is its request path alone; they are resumed (and the backlog drained) afterwards.
``--profile DIR`` records a py-spy profile (``--gil``, raw format) of each service during the round,
when py-spy is installed (``pip install py-spy``; not a project dependency).

    .venv/bin/python bench/cpu_per_referral.py [--referrals 500] [--concurrency 8]
                                               [--database sqlite|postgresql] [--intake-only]
                                               [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from support import EHR_KEY, EXAMPLE, cpu_seconds, paused, postgres_available, quiesce, running_system, table

os.environ.setdefault("PATHWAYS_RATE_LIMITS", '{"ehr-client": ""}')


async def post_referrals(url: str, count: int, concurrency: int, tag: str) -> dict[int, int]:
    template = json.loads(EXAMPLE.read_text())
    headers = {"Authorization": f"Bearer {EHR_KEY}", "Content-Type": "application/fhir+json"}
    gate = asyncio.Semaphore(concurrency)
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:

        async def one(n: int) -> None:
            body = dict(template, identifier={**template["identifier"], "value": f"{tag}-{n}-{uuid.uuid4()}"})
            async with gate:
                response = await client.post("/fhir/Bundle", content=json.dumps(body), headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        await asyncio.gather(*(one(n) for n in range(count)))
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--referrals", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--intake-only", action="store_true")
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    if args.database == "postgresql" and not postgres_available():
        print("PostgreSQL does not answer: skipped")
        return 0
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with (
        tempfile.TemporaryDirectory(prefix="pathways-cpu-") as tmp,
        running_system(Path(tmp), args.database) as system,
    ):
        pids = {name: process.pid for name, process in system.processes.items()}
        url = system.url("intake")
        asyncio.run(post_referrals(url, 50, 4, "warm-up"))
        quiesce(list(pids.values()))
        profilers = []
        if args.profile and Path(spy).exists():
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, pid in pids.items():
                out = args.profile / f"{name}.txt"
                profilers.append(
                    subprocess.Popen(
                        [spy, "record", "--gil", "-r", "100", "-f", "raw", "-o", str(out), "-p", str(pid)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(1.0)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        with paused([pids["router"], pids["notify"]] if args.intake_only else []):
            started = time.perf_counter()
            try:
                statuses = asyncio.run(post_referrals(url, args.referrals, args.concurrency, "round"))
            finally:
                posting = time.perf_counter() - started
                intake_cpu = cpu_seconds(pids["intake"])
        drained = quiesce(list(pids.values()), limit=600.0)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if args.intake_only:
            after["intake"] = intake_cpu
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
            profiler.wait()
    accepted = statuses.get(202, 0)
    rows = []
    total = 0.0
    for name in pids:
        per = (after[name] - before[name]) * 1000 / max(accepted, 1)
        total += per
        rows.append([name, f"{per:.2f}"])
    rows.append(["total", f"{total:.2f}"])
    print(
        f"{args.database}: {accepted} of {args.referrals} accepted ({statuses}), {args.concurrency} at a time, "
        f"{accepted / posting:.0f}/s while posting{' (router and notify paused)' if args.intake_only else ''}; "
        f"downstream drained {drained:.1f} s after"
    )
    print(table(["service", "CPU ms per referral"], rows))
    return 0 if accepted == args.referrals else 1


if __name__ == "__main__":
    sys.exit(main())
