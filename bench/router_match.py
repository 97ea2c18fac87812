"""Per-case match time of the routing rules on a 10,000-service directory (target: p99 under 1 ms).

The areas are real: the shipped national gazetteer (10,062 postcode sectors, 296 English local
authorities, 42 ICBs), so each case is located in it (sector → candidates with shares → material codes)
as in production. The services are synthetic and seeded: about 30 per authority (some by-and-for, some
with eligibility limits, some paused or full), ICB-wide services and national ones. Cases are spread
over every sector (a few unknown or outside England), and mix risk bands, settings, characteristics,
needs, preferences and consent. Prints figures; asserts nothing.

    make bench        # or: .venv/bin/python bench/router_match.py [services] [cases]
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime

from services.directory.default_gazetteer import default_gazetteer
from services.router.domain import DirectoryIndex, route
from shared.directory_contract import DirectorySnapshot, ServiceRecord
from shared.events import (
    ByAndForPreference,
    CareSetting,
    CaseSummary,
    ConsentScope,
    ConsentState,
    ConsentStatus,
    RiskBand,
    RoutingPreferences,
)
from shared.geography import Gazetteer

LOCAL_TYPES = ["community-outreach"] * 5 + ["idva"] * 2 + ["health-idva", "marac", "refuge", "isva",
                                                          "sexual-violence-counselling", "chidva"]
COMMUNITIES = ["black-minoritised", "deaf", "disabled", "lgbt+", "gypsy-roma-traveller", "older-people", "men"]
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
REPEAT, REPEAT_CASES = 5, 5_000


def build_directory(n_services: int, rng: random.Random, gazetteer: Gazetteer) -> DirectorySnapshot:
    lads = sorted(gazetteer.authorities)
    icbs = sorted({icb for _, _, icb in gazetteer.authorities.values()})
    services: list[ServiceRecord] = []
    n_national, n_icb = 60, 420
    for i in range(n_services - n_national - n_icb):
        lad = lads[i % len(lads)]
        kind = LOCAL_TYPES[rng.randrange(len(LOCAL_TYPES))]
        services.append(ServiceRecord(
            id=f"svc-{i:05d}", organisation_id=f"org-{i // 3:05d}", organisation_name=f"Org {i // 3}",
            name=f"Service {i}", service_type=kind, coverage=(lad,),
            by_and_for=(rng.choice(COMMUNITIES),) if rng.random() < 0.15 else (),
            risk_levels=("high",) if kind in ("idva", "marac") else rng.choice([("standard", "medium"),
                                                                                ("standard", "medium", "high")]),
            genders=("female",) if rng.random() < 0.2 else (),
            accepts_nrpf=rng.random() > 0.2, bsl=rng.random() < 0.05,
            languages=("en", rng.choice(["ur", "pl", "pa", "ar"])) if rng.random() < 0.2 else (),
            abuse_types=("sexual-violence",) if kind in ("isva", "sexual-violence-counselling") else (),
            worker_genders=rng.choice([(), ("female",), ("female", "male")]),
            max_age=17 if kind == "chidva" else None,
            accepting=rng.random() > 0.05, max_open_offers=rng.choice([None, 5, 20, 50]),
        ))
    for i in range(n_icb):
        services.append(ServiceRecord(
            id=f"icb-{i:04d}", organisation_id=f"icb-org-{i}", organisation_name=f"ICB org {i}", name=f"ICB service {i}",
            service_type="community-outreach", coverage=(icbs[i % len(icbs)],), coverage_level="regional",
            by_and_for=(COMMUNITIES[i % len(COMMUNITIES)],), bsl=i % 7 == 1,
        ))
    for i in range(n_national):
        kind = "national-helpline" if i < 10 else "community-outreach"
        services.append(ServiceRecord(
            id=f"nat-{i:03d}", organisation_id=f"nat-org-{i}", organisation_name=f"National {i}", name=f"National {i}",
            service_type=kind, coverage=("national",), coverage_level="national",
            by_and_for=(COMMUNITIES[i % len(COMMUNITIES)],) if i % 3 else (),
        ))
    return DirectorySnapshot(version="bench", generated_at=NOW, services=tuple(services),
                             gazetteer_version=gazetteer.version)


def make_case(rng: random.Random, sectors: list[str]) -> tuple[CaseSummary, ConsentState]:
    sector = rng.choice(sectors)
    summary = CaseSummary(
        postcode_district=sector.split(" ")[0],
        postcode_sector=sector,
        risk_band=rng.choice(list(RiskBand)),
        setting=rng.choice(list(CareSetting)),
        characteristics=tuple(rng.sample(COMMUNITIES, rng.choice([0, 0, 1, 2]))),
        needs=tuple(n for n in ("bsl", "no-recourse-to-public-funds", "safe-accommodation") if rng.random() < 0.1),
        gender=rng.choice(["female", "female", "male", None]),
        age_band=rng.choice(["16-17", "18-24", "25-59", "60-plus", None]),
        language=rng.choice([None, None, None, "pl"]),
        preferences=RoutingPreferences(
            by_and_for=rng.choice(list(ByAndForPreference)), worker_gender=rng.choice([None, "female", "male"]),
        ),
    )
    consent = rng.choice([
        ConsentState(status=ConsentStatus.granted, scopes=tuple(ConsentScope)),
        ConsentState(status=ConsentStatus.granted, scopes=(ConsentScope.specialist_da, ConsentScope.idva)),
        ConsentState(status=ConsentStatus.refused, safeguarding_basis=True),
    ])
    return summary, consent


def main(n_services: int = 10_000, n_cases: int = 20_000) -> None:
    rng = random.Random(5)
    gazetteer = default_gazetteer()
    snapshot = build_directory(n_services, rng, gazetteer)
    started = time.perf_counter()
    index = DirectoryIndex.from_snapshot(snapshot, gazetteer)
    build_ms = (time.perf_counter() - started) * 1000
    open_offers = {s.id: rng.randrange(60) for s in snapshot.services if rng.random() < 0.3}
    # Every sector, and some that are unknown or outside England on purpose.
    sectors = [*gazetteer.sectors, "ZZ9 9", "CF10 1", "EH1 1", "BT1 1", "GY1 1"]
    cases = [make_case(rng, sectors) for _ in range(n_cases)]
    for summary, consent in cases[:500]:  # warm up
        route(summary, consent, index, open_offers=open_offers, now=NOW)
    timings: list[float] = []
    # CPU time of this thread too: on a shared machine wall time also counts waiting for a core.
    cpu: list[float] = []
    candidates = 0
    for summary, consent in cases:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        decision = route(summary, consent, index, open_offers=open_offers, now=NOW)
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        timings.append((time.perf_counter_ns() - t0) / 1e6)
        candidates += len(decision.ranking()) + len(decision.excluded) + len(decision.passed_over)
    timings.sort()
    cpu.sort()

    def pct(p: float, values: list[float] = timings) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    print(f"directory: {len(snapshot.services):,} services; gazetteer: {len(gazetteer.sectors):,} sectors, "
          f"{len(gazetteer.districts):,} districts, {len(gazetteer.authorities)} authorities ({gazetteer.source}); "
          f"index built in {build_ms:.1f} ms")
    print(f"cases: {n_cases:,}; candidates looked at per case: {candidates / n_cases:.1f} on average")
    print(f"per-case match time (ms): mean {statistics.fmean(timings):.3f}  p50 {pct(50):.3f}  "
          f"p95 {pct(95):.3f}  p99 {pct(99):.3f}  max {timings[-1]:.3f}")
    print(f"per-case CPU time (ms):   mean {statistics.fmean(cpu):.3f}  p50 {pct(50, cpu):.3f}  "
          f"p95 {pct(95, cpu):.3f}  p99 {pct(99, cpu):.3f}  max {cpu[-1]:.3f}")
    # Less dependent on a shared machine: each case timed REPEAT times and its best CPU time kept (what the
    # case costs when nothing else preempted it), over the first REPEAT_CASES cases.
    best: list[float] = []
    for summary, consent in cases[:REPEAT_CASES]:
        runs = []
        for _ in range(REPEAT):
            c0 = time.thread_time_ns()
            route(summary, consent, index, open_offers=open_offers, now=NOW)
            runs.append((time.thread_time_ns() - c0) / 1e6)
        best.append(min(runs))
    best.sort()
    print(f"per-case CPU time, best of {REPEAT} runs of each of {len(best):,} cases (ms): mean "
          f"{statistics.fmean(best):.3f}  p50 {pct(50, best):.3f}  p95 {pct(95, best):.3f}  p99 {pct(99, best):.3f}  "
          f"max {best[-1]:.3f}")
    print(f"target p99 < 1 ms: {'met' if pct(99) < 1 else 'NOT met'} (wall), "
          f"{'met' if pct(99, cpu) < 1 else 'NOT met'} (CPU), {'met' if pct(99, best) < 1 else 'NOT met'} (best of "
          f"{REPEAT})  (python {sys.version.split()[0]}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
