"""Report build time: notify's tables (with small-number suppression across linked tables) for N
synthetic cases spread over real English local authorities, and the router's gap analysis over the
shipped gazetteer with the sample directory. Prints the figures; not part of the test run.

    .venv/bin/python bench/reports.py --cases 5000
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.directory.default_gazetteer import default_gazetteer
from services.notify.reports.figures import CaseFacts, GapFacts, OfferFacts, build_tables
from services.router.domain import DirectoryIndex
from services.router.gaps import geography_report
from shared.directory_contract import DirectorySnapshot, ServiceRecord
from shared.events import (
    AreaShare,
    AreaStatus,
    ByAndForPreference,
    CareSetting,
    CaseArea,
    CaseSummary,
    RiskBand,
    RoutingPreferences,
)
from shared.reference import Community


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    gazetteer = default_gazetteer()
    districts = sorted(gazetteer.districts)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cases, offers, summaries = [], [], []
    for _ in range(args.cases):
        district = rng.choice(districts)
        lads, icbs = gazetteer.districts[district]
        summary = CaseSummary(
            postcode_district=district, risk_band=rng.choice(list(RiskBand)), setting=rng.choice(list(CareSetting)),
            characteristics=tuple(rng.sample([c.value for c in Community], k=rng.choice([0, 0, 0, 1, 1, 2]))),
            preferences=RoutingPreferences(by_and_for=rng.choice(list(ByAndForPreference))),
            area=CaseArea(status=AreaStatus.england, district=district, precision="district",
                          lads=tuple(AreaShare(code=c, share=s) for c, s in lads),
                          icbs=tuple(AreaShare(code=c, share=s) for c, s in icbs)))
        summaries.append(summary)
        case = CaseFacts(case_id=uuid4(), summary=summary, referred_at=start + timedelta(days=rng.randrange(330)))
        cases.append(case)
        accepted = rng.random() < 0.7
        offers.append(OfferFacts(
            case_id=case.case_id, service_type="community-outreach", by_and_for=False,
            status="accepted" if accepted else rng.choice(["declined", "expired", "offered"]),
            status_reason=None if accepted else "no-capacity", outcome=rng.choice([None, "contact-made", "closed"])
            if accepted else None, assigned_by_ops=False,
            accepted_at=case.referred_at + timedelta(hours=rng.uniform(1, 72)) if accepted else None,
            first_contact_at=case.referred_at + timedelta(hours=rng.uniform(2, 120)) if accepted else None))

    import json
    from pathlib import Path
    sample = json.loads((Path("services/directory/sample/directory.json")).read_text())
    services = [ServiceRecord(**{k: v for k, v in s.items() if k in ServiceRecord.model_fields},
                              organisation_id=o["id"], organisation_name=o["name"])
                for o in sample["organisations"] for s in o.get("services", [])]
    index = DirectoryIndex.from_snapshot(DirectorySnapshot(version="bench", generated_at=start,
                                                           services=tuple(services)), gazetteer)
    began = time.perf_counter()
    report = geography_report(summaries, index)
    gaps_seconds = time.perf_counter() - began
    geography = GapFacts(names=report.names, gaps=[g.model_dump(mode="json") for g in report.gaps],
                         areas=[a.model_dump(mode="json") for a in report.areas])
    began = time.perf_counter()
    tables = build_tables(cases, offers, geography)
    tables_seconds = time.perf_counter() - began
    hidden = sum(len(t.hidden) for t in tables)
    cells = sum(len(cells) for t in tables for _, cells in t.rows)
    print(f"cases: {args.cases}; tables: {len(tables)}; cells: {cells}; hidden: {hidden} "
          f"({', '.join(f'{t.key} {len(t.hidden)}' for t in tables if t.hidden)})")
    print(f"router gap analysis: {gaps_seconds:.2f} s; notify tables with suppression: {tables_seconds:.2f} s")


if __name__ == "__main__":
    main()
