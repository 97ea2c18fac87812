"""Per-case match time of the routing rules on a 10,000-service directory (target: p99 under 1 ms).

Synthetic and seeded: 300 local authorities in 42 ICBs, 2,400 postcode districts, about 30 services
per authority (some by-and-for, some with eligibility limits, some paused or full), ICB-wide services
and national ones. Cases mix areas, risk bands, settings, characteristics, needs, preferences and
consent. Prints figures; asserts nothing.

    make bench        # or: .venv/bin/python bench/router_match.py [services] [cases]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import UTC, datetime

from services.router.domain import DirectoryIndex, route
from shared.directory_contract import AreaResolution, DirectorySnapshot, ServiceRecord
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

LOCAL_TYPES = ["community-outreach"] * 5 + ["idva"] * 2 + ["health-idva", "marac", "refuge", "isva",
                                                          "sexual-violence-counselling", "chidva"]
COMMUNITIES = ["black-minoritised", "deaf", "disabled", "lgbt+", "gypsy-roma-traveller", "older-people", "men"]
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def build_directory(n_services: int, rng: random.Random) -> DirectorySnapshot:
    lads = [f"E0{8000000 + i:07d}" for i in range(300)]
    icbs = [f"E54{i:06d}" for i in range(42)]
    lad_icb = {lad: icbs[i % len(icbs)] for i, lad in enumerate(lads)}
    areas = [
        AreaResolution(district=f"D{i}", lad_codes=(lads[i % 300],) if i % 10 else (lads[i % 300], lads[(i + 1) % 300]),
                       utla_codes=(lads[i % 300],), icb_codes=(lad_icb[lads[i % 300]],),
                       names={lads[i % 300]: f"Authority {i % 300}"})
        for i in range(2400)
    ]
    services: list[ServiceRecord] = []
    n_national, n_icb = 60, 420
    for i in range(n_services - n_national - n_icb):
        lad = lads[i % 300]
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
            service_type="community-outreach", coverage=(icbs[i % 42],), coverage_level="regional",
            by_and_for=(COMMUNITIES[i % len(COMMUNITIES)],), bsl=i % 7 == 1,
        ))
    for i in range(n_national):
        kind = "national-helpline" if i < 10 else "community-outreach"
        services.append(ServiceRecord(
            id=f"nat-{i:03d}", organisation_id=f"nat-org-{i}", organisation_name=f"National {i}", name=f"National {i}",
            service_type=kind, coverage=("national",), coverage_level="national",
            by_and_for=(COMMUNITIES[i % len(COMMUNITIES)],) if i % 3 else (),
        ))
    return DirectorySnapshot(version="bench", generated_at=NOW, services=tuple(services), areas=tuple(areas))


def make_case(rng: random.Random) -> tuple[CaseSummary, ConsentState]:
    summary = CaseSummary(
        postcode_district=f"D{rng.randrange(2500)}",  # some districts unknown on purpose
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
    snapshot = build_directory(n_services, rng)
    started = time.perf_counter()
    index = DirectoryIndex.from_snapshot(snapshot)
    build_ms = (time.perf_counter() - started) * 1000
    open_offers = {s.id: rng.randrange(60) for s in snapshot.services if rng.random() < 0.3}
    cases = [make_case(rng) for _ in range(n_cases)]
    for summary, consent in cases[:500]:  # warm up
        route(summary, consent, index, open_offers=open_offers, now=NOW)
    timings: list[float] = []
    candidates = 0
    for summary, consent in cases:
        t0 = time.perf_counter_ns()
        decision = route(summary, consent, index, open_offers=open_offers, now=NOW)
        timings.append((time.perf_counter_ns() - t0) / 1e6)
        candidates += len(decision.ranking()) + len(decision.excluded) + len(decision.passed_over)
    timings.sort()

    def pct(p: float) -> float:
        return timings[min(len(timings) - 1, int(p / 100 * len(timings)))]

    print(f"directory: {len(snapshot.services):,} services, {len(snapshot.areas):,} districts; "
          f"index built in {build_ms:.1f} ms")
    print(f"cases: {n_cases:,}; candidates looked at per case: {candidates / n_cases:.1f} on average")
    print(f"per-case match time (ms): mean {statistics.fmean(timings):.3f}  p50 {pct(50):.3f}  "
          f"p95 {pct(95):.3f}  p99 {pct(99):.3f}  max {timings[-1]:.3f}")
    print(f"target p99 < 1 ms: {'met' if pct(99) < 1 else 'NOT met'}  (python {sys.version.split()[0]})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
