"""The report tables, as pure functions of non-identifying facts: counts by area, setting, risk band,
shared characteristics and route; offers and outcomes; timings; and the gap analysis. Every count table
goes through small-number suppression together with the tables it can be linked to."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from services.notify.domain import DeclineReason, OfferStatus, Outcome
from services.notify.reports.suppression import TOTAL, CountTable, Link, PublishedTable, suppress_together
from shared.events import CareSetting, CaseSummary, RiskBand
from shared.reference import Community, ServiceType

MIN_CASES_FOR_TIMES = 5
UNPLACED = "not placed"
COMMUNITY_NAMES = {
    Community.black_minoritised: "Black and minoritised", Community.deaf: "Deaf", Community.disabled: "Disabled",
    Community.lgbt: "LGBT+", Community.gypsy_roma_traveller: "Gypsy, Roma and Traveller",
    Community.older_people: "Older people", Community.men: "Men",
}
OUTCOME_NAMES = {None: "no outcome yet", **{o.value: o.value.replace("-", " ") for o in Outcome}}


@dataclass(frozen=True)
class CaseFacts:
    case_id: UUID
    summary: CaseSummary | None
    referred_at: datetime


@dataclass(frozen=True)
class OfferFacts:
    case_id: UUID
    service_type: str
    by_and_for: bool
    status: str
    status_reason: str | None
    outcome: str | None
    assigned_by_ops: bool
    accepted_at: datetime | None
    first_contact_at: datetime | None


@dataclass(frozen=True)
class GapFacts:
    """The router's raw counts (``services.router.gaps``)."""

    names: Mapping[str, str]
    gaps: Sequence[Mapping[str, object]]
    areas: Sequence[Mapping[str, object]]


def _icb(summary: CaseSummary | None) -> str:
    area = summary.area if summary else None
    return (area.icbs[0].code if area and area.icbs else "") or UNPLACED


def _lad(summary: CaseSummary | None) -> str:
    area = summary.area if summary else None
    return (area.lads[0].code if area and area.lads else "") or UNPLACED


def _name(names: Mapping[str, str], code: str) -> str:
    return names.get(code) or code


def _labels(codes: Iterable[str], name: Callable[[str], str]) -> dict[str, str]:
    """Row labels that are unique (the links between tables find rows by label): a name shared by two
    codes is followed by each code."""
    codes = list(codes)
    counts = Counter(name(code) for code in codes)
    return {code: name(code) if counts[name(code)] == 1 else f"{name(code)} ({code})" for code in codes}


def _months(counted: Mapping[str, int]) -> list[str]:
    """Every month from the first referral's to the last's ("YYYY-MM"), those with none included: a trend."""
    if not counted:
        return []
    first, last = min(counted), max(counted)
    year, month = int(first[:4]), int(first[5:])
    months = []
    while f"{year:04d}-{month:02d}" <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def route_kinds(offers: Iterable[OfferFacts]) -> set[str]:
    """The kinds of service a case was offered to (one case can take several routes at once)."""
    kinds = set()
    for offer in offers:
        if offer.assigned_by_ops:
            kinds.add("assigned by ops")
        if offer.service_type in (ServiceType.idva, ServiceType.health_idva, ServiceType.chidva):
            kinds.add("IDVA service")
        elif offer.service_type == ServiceType.marac:
            kinds.add("MARAC")
        elif offer.service_type == ServiceType.national_helpline:
            kinds.add("national helpline")
        elif offer.by_and_for:
            kinds.add("by-and-for service")
        else:
            kinds.add("specialist service")
    return kinds or {"no offer made"}


ROUTES = ("IDVA service", "MARAC", "by-and-for service", "specialist service", "national helpline",
          "assigned by ops", "no offer made")


def _hours(pairs: Iterable[tuple[datetime, datetime | None]]) -> list[float]:
    return sorted((later - start).total_seconds() / 3600 for start, later in pairs if later is not None and later >= start)


def timing_row(label: str, hours: list[float]) -> tuple[str, tuple[str, ...]]:
    """Median and 90th percentile, shown only over at least five cases (fewer could single one out)."""
    if len(hours) < MIN_CASES_FOR_TIMES:
        shown = "<5" if hours else "0"
        return label, (shown, "not shown", "not shown")
    p90 = statistics.quantiles(hours, n=10, method="inclusive")[8]
    return label, (str(len(hours)), f"{statistics.median(hours):.1f}", f"{p90:.1f}")


def build_tables(cases: Sequence[CaseFacts], offers: Sequence[OfferFacts], geography: GapFacts | None
                 ) -> list[PublishedTable]:
    """Every report table, suppressed together."""
    names = geography.names if geography else {}
    bands = [b.value for b in RiskBand][::-1]  # high first

    by_icb: dict[str, Counter[str]] = {}
    by_la: Counter[tuple[str, str]] = Counter()
    by_setting: Counter[str] = Counter()
    by_month: Counter[str] = Counter()
    by_community: Counter[str] = Counter()
    for case in cases:
        band = case.summary.risk_band.value if case.summary else "not known"
        by_icb.setdefault(_icb(case.summary), Counter())[band] += 1
        by_la[(_icb(case.summary), _lad(case.summary))] += 1
        by_setting[case.summary.setting.value if case.summary else "not known"] += 1
        by_month[case.referred_at.strftime("%Y-%m")] += 1
        for community in set(case.summary.characteristics if case.summary else ()):
            by_community[community] += 1
    if any(b["not known"] for b in by_icb.values()):
        bands.append("not known")
    icb_rows = sorted(by_icb, key=lambda code: (code == UNPLACED, _name(names, code)))
    icb_label = _labels(icb_rows, lambda code: _name(names, code))
    la_label = _labels(by_la, lambda key: f"{icb_label[key[0]]}: {_name(names, key[1])}")  # type: ignore[arg-type]
    tables = [
        CountTable.of("referrals-by-icb", "Referrals by ICB and risk band", "ICB", bands,
                      [(icb_label[code], [by_icb[code][b] for b in bands]) for code in icb_rows]),
        CountTable.of("referrals-by-authority", "Referrals by local authority", "ICB: local authority",
                      ["referrals"], [(la_label[key], [by_la[key]]) for key in sorted(by_la, key=la_label.get)]),
        CountTable.of("referrals-by-setting", "Referrals by setting", "setting", ["referrals"],
                      [(s.value, [by_setting[s.value]]) for s in CareSetting if by_setting[s.value]]
                      + ([("not known", [by_setting["not known"]])] if by_setting["not known"] else [])),
        CountTable.of("referrals-by-month", "Referrals by month", "month", ["referrals"],
                      [(month, [by_month[month]]) for month in _months(by_month)]),
        CountTable.of("referrals-by-characteristic", "Survivors by the characteristics they chose to share",
                      "characteristic", ["survivors"],
                      [(COMMUNITY_NAMES.get(c, c), [by_community[c]]) for c in Community],
                      additive=False, note="One survivor may share several characteristics, so there is no total."),
    ]
    links = [Link((("referrals-by-icb", TOTAL, TOTAL if len(bands) > 1 else bands[0]),),
                  (key, TOTAL, "referrals"))
             for key in ("referrals-by-authority", "referrals-by-setting", "referrals-by-month")] if cases else []
    for code in icb_rows:
        parts = tuple(("referrals-by-authority", la_label[key], "referrals") for key in by_la if key[0] == code)
        links.append(Link(parts, ("referrals-by-icb", icb_label[code], TOTAL if len(bands) > 1 else bands[0])))

    # Routes, offers and outcomes.
    offers_by_case: dict[UUID, list[OfferFacts]] = {}
    for offer in offers:
        offers_by_case.setdefault(offer.case_id, []).append(offer)
    routes: Counter[str] = Counter()
    for case in cases:
        routes.update(route_kinds(offers_by_case.get(case.case_id, ())))
    tables.append(CountTable.of("referrals-by-route", "Referrals by route taken", "route", ["referrals"],
                                [(route, [routes[route]]) for route in ROUTES], additive=False,
                                note="A high-risk case goes to an IDVA service and the MARAC at once, so there is "
                                     "no total."))
    answers: Counter[str] = Counter()
    for offer in offers:
        if offer.status == OfferStatus.declined:
            answers[f"declined: {offer.status_reason or DeclineReason.other}"] += 1
        else:
            answers[offer.status] += 1
    answer_rows = [OfferStatus.accepted.value, *(f"declined: {r.value}" for r in DeclineReason),
                   OfferStatus.expired.value, OfferStatus.withdrawn.value, OfferStatus.offered.value]
    tables.append(CountTable.of("offers", "Offers by answer (declined by reason)", "answer", ["offers"],
                                [(row if row != "offered" else "awaiting an answer", [answers[row]])
                                 for row in answer_rows]))
    outcome_counts = Counter(o.outcome for o in offers if o.status == OfferStatus.accepted)
    tables.append(CountTable.of("outcomes", "Outcomes of accepted offers (latest reported)", "outcome", ["offers"],
                                [(OUTCOME_NAMES[k], [outcome_counts[k]]) for k in OUTCOME_NAMES]))
    links.append(Link((("outcomes", TOTAL, "offers"),), ("offers", OfferStatus.accepted.value, "offers")))

    # Gap analysis.
    if geography is not None:
        gap: dict[tuple[str, str], Counter[str]] = {}
        for row in geography.gaps:
            key = (str(row["icb"]), str(row["community"]))
            gap.setdefault(key, Counter())[str(row["availability"])] += int(row["survivors"])  # type: ignore[call-overload]
        levels = ["local", "regional", "national", "none"]
        keys = sorted(gap, key=lambda k: (_name(names, k[0]), k[1]))
        tables.append(CountTable.of(
            "gaps", "Gap analysis: survivors whose shared characteristics call for a by-and-for service, and "
            "where the nearest one is", "ICB: community", ["local", "regional", "national", "not at all"],
            [(f"{_name(names, icb)}: {COMMUNITY_NAMES.get(c, c)}", [gap[(icb, c)][lv] for lv in levels])
             for icb, c in keys],
            note="Survivors who shared a characteristic and did not decline by-and-for services; by the ICB "
                 "holding most of their postcode sector."))
    published = suppress_together(tables, links)

    first_accept = {}
    first_contact = {}
    for offer in offers:
        if offer.accepted_at is not None:
            first_accept[offer.case_id] = min(first_accept.get(offer.case_id, offer.accepted_at), offer.accepted_at)
        if offer.first_contact_at is not None:
            first_contact[offer.case_id] = min(first_contact.get(offer.case_id, offer.first_contact_at),
                                               offer.first_contact_at)
    starts = {c.case_id: c.referred_at for c in cases}
    published.append(PublishedTable(
        "timings", "Time from referral (hours)", "measure", ("cases", "median", "90th percentile"),
        (timing_row("to acceptance", _hours((starts[k], v) for k, v in first_accept.items() if k in starts)),
         timing_row("to first contact", _hours((starts[k], v) for k, v in first_contact.items() if k in starts))),
        note=f"Shown over at least {MIN_CASES_FOR_TIMES} cases."))
    if geography is not None:
        missing = [a for a in geography.areas if not (a["idva"] and a["marac"])]
        published.append(PublishedTable(
            "areas-without-idva-or-marac", "Local authorities with no IDVA service or no MARAC listed",
            "local authority", ("ICB", "IDVA service", "MARAC"),
            tuple((_name(names, str(a["lad"])), (_name(names, str(a["icb"] or "")), "listed" if a["idva"] else
                                                  "none listed", "listed" if a["marac"] else "none listed"))
                  for a in sorted(missing, key=lambda a: _name(names, str(a["lad"])))),
            note="Services that cover the authority, its upper tier, its ICB or its region."))
    return published
