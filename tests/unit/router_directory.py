"""A synthetic directory for the routing rule tests: West Yorkshire (sample) plus national services.

Every organisation here is invented. Leeds has a full set of services; Bradford a few; Calderdale
none of its own (only what covers the whole ICB or the nation); "WF10" straddles Wakefield and Leeds.
The gazetteer here is a synthetic four-district one; tests of the shipped national one use it directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.router.domain import DirectoryIndex
from shared.directory_contract import DirectorySnapshot, ServiceRecord
from shared.geography import Gazetteer

LEEDS, BRADFORD, CALDERDALE, WAKEFIELD, WY_ICB = "E08000035", "E08000032", "E08000033", "E08000036", "E54000054"
ALL_BANDS = ("standard", "medium", "high")
LOWER_BANDS = ("standard", "medium")


def service(id: str, service_type: str, coverage: tuple[str, ...] = (LEEDS,), **kw: Any) -> ServiceRecord:
    kw.setdefault("risk_levels", ALL_BANDS)
    kw.setdefault("organisation_name", f"{id} (sample)")
    return ServiceRecord(id=id, organisation_id=kw.pop("organisation_id", f"org-{id}"), name=f"{id} (sample)",
                         service_type=service_type, coverage=coverage, **kw)


SERVICES = (
    # Leeds
    service("leeds-outreach", "community-outreach", risk_levels=LOWER_BANDS, max_open_offers=2,
            worker_genders=("female",)),
    service("leeds-outreach-b", "community-outreach", risk_levels=LOWER_BANDS, languages=("en", "ur"),
            worker_genders=("female", "male")),
    service("kinara-outreach", "community-outreach", by_and_for=("black-minoritised",), genders=("female",)),
    service("leeds-idva", "idva", risk_levels=("high",), max_open_offers=1),
    service("leeds-idva-b", "idva", risk_levels=("high",), accepts_nrpf=False),
    service("northgate-health-idva", "health-idva", risk_levels=("high", "medium")),
    service("leeds-marac", "marac", risk_levels=("high",)),
    service("leeds-refuge", "refuge", genders=("female",)),
    service("leeds-isva", "sexual-violence-counselling", abuse_types=("sexual-violence",)),
    service("leeds-chidva", "chidva", max_age=17),
    service("leeds-fm", "community-outreach", abuse_types=("forced-marriage", "honour-based-abuse")),
    service("leeds-perpetrator", "perpetrator-programme"),
    service("leeds-closed", "community-outreach", status="temporarily-closed"),
    # The whole ICB: a Deaf-led service
    service("wy-deaf-outreach", "community-outreach", (WY_ICB,), coverage_level="regional",
            by_and_for=("deaf",), bsl=True),
    # Bradford
    service("bradford-outreach", "community-outreach", (BRADFORD,), risk_levels=LOWER_BANDS, accepts_nrpf=False),
    service("bradford-idva", "idva", (BRADFORD,), risk_levels=("high",)),
    service("bradford-marac", "marac", (BRADFORD,), risk_levels=("high",)),
    # National
    service("national-da-helpline", "national-helpline", ("national",), coverage_level="national"),
    service("national-mens-helpline", "national-helpline", ("national",), coverage_level="national",
            by_and_for=("men",)),
    service("national-lgbt-helpline", "national-helpline", ("national",), coverage_level="national",
            by_and_for=("lgbt+",)),
    service("national-lgbt-outreach", "community-outreach", ("national",), coverage_level="national",
            by_and_for=("lgbt+",)),
)


def _district(*lads: tuple[str, float]) -> tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]:
    return tuple(lads), ((WY_ICB, 1.0),)


GAZETTEER = Gazetteer(
    source="test", version="test-gazetteer-1",
    names={LEEDS: "Leeds", BRADFORD: "Bradford", CALDERDALE: "Calderdale", WAKEFIELD: "Wakefield"},
    authorities={code: (code, "", WY_ICB) for code in (LEEDS, BRADFORD, CALDERDALE, WAKEFIELD)},
    districts={
        "LS7": _district((LEEDS, 1.0)),
        "BD1": _district((BRADFORD, 1.0)),
        "HX1": _district((CALDERDALE, 1.0)),
        "WF10": _district((WAKEFIELD, 0.6), (LEEDS, 0.4)),
    },
)


def snapshot(services: tuple[ServiceRecord, ...] = SERVICES, version: str = "test-1") -> DirectorySnapshot:
    return DirectorySnapshot(version=version, generated_at=datetime(2026, 11, 22, tzinfo=UTC), services=services,
                             gazetteer_version=GAZETTEER.version)


def directory_index(services: tuple[ServiceRecord, ...] = SERVICES, version: str = "test-1") -> DirectoryIndex:
    """The router's indexed copy of ``snapshot`` with the synthetic gazetteer."""
    return DirectoryIndex.from_snapshot(snapshot(services, version), GAZETTEER)
