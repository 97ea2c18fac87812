"""Directory search latency on a 10,000-service directory (prints figures; not part of the tests).

Builds a throw-away SQLite directory: the sample directory (on the shipped national gazetteer) plus 10,000 synthetic
services spread over England as a national directory would be (each covering one to three of the
296 local authorities, 42 ICBs or the sample's Leeds postcode districts; one in 500 national), then times ``GET /services`` in-process through the ASGI stack (routing, validation, area
resolution in the gazetteer, the index version check, filtering, serialisation; no network).

    .venv/bin/python bench/directory_search.py [--services 10000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from services.directory.app import create_app
from services.directory.default_gazetteer import default_gazetteer
from services.directory.settings import DirectorySettings
from services.directory.store import Service
from services.launcher import NatsServer
from shared.reference import Community, ServiceType

GAZETTEER = default_gazetteer()
AREAS = [*GAZETTEER.authorities, *sorted({icb for _, _, icb in GAZETTEER.authorities.values()}),
         *(f"LS{n}" for n in range(1, 29))]
QUERIES = [
    {"area": "LS7"},
    {"area": "LS7 3AB", "accepting": "true"},
    {"area": "LS11", "type": ["idva", "health-idva"], "risk": "high"},
    {"area": "LS7", "community": "black-minoritised", "language": "ur", "gender": "female"},
    {"area": "E08000035", "nrpf": "true", "age": "19", "abuse_type": "forced-marriage"},
]


def synthetic_services(count: int, rng: random.Random) -> list[Service]:
    types = [t.value for t in ServiceType if t not in (ServiceType.national_helpline, ServiceType.perpetrator_programme)]
    services = []
    for i in range(count):
        national = rng.random() < 0.002
        services.append(Service(
            id=f"bench-{i:05d}", organisation_id="aire-valley-da", name=f"Bench service {i} (sample)",
            service_type=rng.choice(types),
            coverage=["national"] if national else rng.sample(AREAS, rng.randint(1, 3)),
            coverage_level="national" if national else "local",
            by_and_for=[rng.choice(list(Community)).value] if rng.random() < 0.2 else [],
            genders=["female"] if rng.random() < 0.3 else [],
            accepts_nrpf=rng.random() < 0.7,
            risk_levels=rng.sample(["standard", "medium", "high"], rng.randint(1, 3)),
            languages=rng.sample(["ur", "pa", "pl", "ar", "so", "bn"], rng.randint(0, 2)),
            abuse_types=rng.sample(["domestic-abuse", "forced-marriage", "fgm", "sexual-violence"], rng.randint(0, 2)),
            accepting=rng.random() < 0.85,
        ))
    return services


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def main(services: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsServer(Path(tmp) / "nats")
        nats.start()
        try:
            app = create_app(DirectorySettings(nats_url=nats.url, database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
                                               load_sample=True))
            async with app.router.lifespan_context(app):
                db = app.state.runtime.db
                async with db.transaction() as session:
                    session.add_all(synthetic_services(services, random.Random(4)))
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                    started = time.perf_counter()
                    first = await client.get("/services", params={"area": "LS7"})
                    build_ms = (time.perf_counter() - started) * 1000
                    print(f"directory: {services} synthetic + sample services; first search (builds the index) "
                          f"{build_ms:.0f} ms, {len(first.json())} results")
                    print(f"{'query':<70} {'results':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
                    for query in QUERIES:
                        timings, count = [], 0
                        for _ in range(requests):
                            t0 = time.perf_counter()
                            response = await client.get("/services", params=query)
                            timings.append((time.perf_counter() - t0) * 1000)
                            count = len(response.json())
                        label = "&".join(f"{k}={v}" for k, v in query.items())
                        print(f"{label:<70} {count:>7} {statistics.median(timings):>7.2f} "
                              f"{percentile(timings, 95):>7.2f} {max(timings):>7.2f}")
        finally:
            nats.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.services, args.requests))
