"""Scraping /metrics: each scrape reads the outbox depth from the database and consumer lag and the
dead-letter depth from JetStream. Starts the whole system as processes (as `make run` does), posts
referrals, then times scrapes of every service and prints percentiles per service.

    .venv/bin/python bench/metrics_scrape.py [scrapes] [referrals]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from services.launcher import SERVICES, System, free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gp-referral.json"


def main(scrapes: int, referrals: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ports = {name: free_port() for name in (*SERVICES, "nats", "nats_monitor")}
        system = System(data_dir=Path(tmp) / ".data", ports=ports)
        system.start(timeout=120)
        try:
            bundle = EXAMPLE.read_text()
            for i in range(referrals):
                # A distinct Bundle identifier each time, so each is a new referral, not a retry.
                body = bundle.replace("GP-REF-000001", f"GP-REF-BENCH-{i}")
                posted = httpx.post(f"{system.url('intake')}/fhir/Bundle", content=body,
                                    headers={"Authorization": "Bearer pw_sample_ehr_client",
                                             "Content-Type": "application/fhir+json"})
                assert posted.status_code == 202, posted.text
            with httpx.Client() as client:
                for service in SERVICES:
                    url = f"{system.url(service)}/metrics"
                    client.get(url)  # warm up
                    times = []
                    for _ in range(scrapes):
                        started = time.perf_counter()
                        response = client.get(url)
                        times.append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200
                    times.sort()
                    print(f"{service:<10} scrapes {scrapes}  size {len(response.content):>6} B  "
                          f"p50 {statistics.median(times):6.1f} ms  p95 {times[int(len(times) * 0.95) - 1]:6.1f} ms  "
                          f"max {times[-1]:6.1f} ms")
        finally:
            system.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
