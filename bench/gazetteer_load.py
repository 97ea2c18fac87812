"""How long the directory takes to load the shipped national gazetteer at start-up, and the memory it holds
(target: under 2 s). Each figure comes from a fresh Python process, as a directory starting up would be.

    .venv/bin/python bench/gazetteer_load.py [runs]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

PROBE = """
import gc, json, resource, time, tracemalloc
def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
import shared.geography, services.directory.default_gazetteer as module  # imports are not the load
gc.collect()
before = rss_kib()
started = time.perf_counter()
gazetteer = module.default_gazetteer()
seconds = time.perf_counter() - started
gc.collect()
rss = (rss_kib() - before) / 1024
# A second copy, traced: what the Python heap keeps for it (pydantic-core's own allocations are not traced).
tracemalloc.start()
copy = module.default_gazetteer.__wrapped__()
held, _peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"seconds": seconds, "held_mib": held / 2**20, "rss_mib": rss,
                  "sectors": len(gazetteer.sectors), "districts": len(gazetteer.districts)}))
"""


def main(runs: int = 5) -> None:
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out))
    seconds = sorted(r["seconds"] for r in results)
    first = results[0]
    print(f"shipped gazetteer: {first['sectors']:,} sectors, {first['districts']:,} districts; {runs} fresh processes")
    print(f"load at start-up (s): median {statistics.median(seconds):.3f}  max {seconds[-1]:.3f}  "
          f"(target < 2 s: {'met' if seconds[-1] < 2 else 'NOT met'})")
    print(f"resident set grew by {statistics.median(r['rss_mib'] for r in results):.1f} MiB while loading "
          f"(includes the decoded JSON's freed temporaries); Python heap held by the loaded copy "
          f"{statistics.median(r['held_mib'] for r in results):.1f} MiB (tracemalloc)  "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
