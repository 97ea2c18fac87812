"""Service search: an in-memory index over the directory, rebuilt when the directory changes.

A directory of 10,000 services is a few megabytes; holding it in memory turns a search into a
dictionary lookup per area code plus filters over the few hundred services an area has, which is
what keeps searches under 10 ms. A commit through this process marks the index stale at once (the
database's on-commit hook); writes through another replica or the CLI are noticed by a cheap version
check (row counts and latest ``updated_at``) made at most every ``max_age`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory.domain import ResolvedArea, coverage_reason
from services.directory.store import Organisation, Service
from shared.geography import canonical_code
from shared.reference import NATIONAL


@dataclass(frozen=True)
class SearchFilters:
    """What a search may ask beyond the area; ``None`` or empty means "any"."""

    service_types: frozenset[str] = frozenset()
    community: str | None = None
    accepting: bool | None = None
    status: str | None = None
    gender: str | None = None
    age: int | None = None
    risk_level: str | None = None
    nrpf: bool | None = None  # the survivor has no recourse to public funds
    language: str | None = None
    bsl: bool | None = None
    abuse_type: str | None = None


@dataclass(frozen=True)
class Entry:
    """One service as search needs it: the public view, plus sets for fast filters."""

    view: dict[str, Any]
    # The view as JSON without its closing brace: a search appends only its match reason, so a large
    # result costs string joins rather than per-field validation and encoding.
    json_head: str
    # The same without the contact fields: what an unauthenticated caller sees (issue 13).
    public_json_head: str
    coverage: tuple[str, ...]
    service_type: str
    communities: frozenset[str]
    genders: frozenset[str]
    min_age: int | None
    max_age: int | None
    accepts_nrpf: bool
    risk_levels: frozenset[str]
    languages: frozenset[str]
    bsl: bool
    abuse_types: frozenset[str]
    accepting: bool
    status: str

    def matches(self, f: SearchFilters) -> bool:
        if f.service_types and self.service_type not in f.service_types:
            return False
        if f.community and f.community not in self.communities:
            return False
        if f.accepting is not None and (self.accepting and self.status == "active") != f.accepting:
            return False
        if f.status and self.status != f.status:
            return False
        # Eligibility: an empty restriction admits everyone.
        if f.gender and self.genders and f.gender not in self.genders:
            return False
        if f.age is not None and (
            (self.min_age is not None and f.age < self.min_age) or (self.max_age is not None and f.age > self.max_age)
        ):
            return False
        if f.risk_level and self.risk_levels and f.risk_level not in self.risk_levels:
            return False
        if f.nrpf and not self.accepts_nrpf:
            return False
        if f.language and self.languages and f.language not in self.languages and f.language != "en":
            return False
        if f.bsl and not self.bsl:
            return False
        if f.abuse_type and self.abuse_types and f.abuse_type not in self.abuse_types:
            return False
        return True


# Who to talk to and where notify delivers: shown to ops, not to anyone on the internet (issue 13).
CONTACT_FIELDS = ("contact_name", "contact_email", "contact_phone", "webhook_url")


def without_contacts(view: dict[str, Any]) -> dict[str, Any]:
    """A public view with the contact fields (and a webhook URL) emptied; the keys stay, so the schema holds."""
    return {**view, **{name: None for name in CONTACT_FIELDS if name in view}}


def entry_for(service: Service, organisation: Organisation) -> Entry:
    view = service.model_dump(exclude={"updated_at"})
    view.update(organisation_name=organisation.name, organisation_by_and_for=list(organisation.by_and_for))
    return Entry(
        view=view,
        json_head=json.dumps(view, separators=(",", ":"), ensure_ascii=False)[:-1],
        public_json_head=json.dumps(without_contacts(view), separators=(",", ":"), ensure_ascii=False)[:-1],
        coverage=tuple(service.coverage),
        service_type=service.service_type,
        communities=frozenset(service.by_and_for) | frozenset(organisation.by_and_for),
        genders=frozenset(service.genders),
        min_age=service.min_age,
        max_age=service.max_age,
        accepts_nrpf=service.accepts_nrpf,
        risk_levels=frozenset(service.risk_levels),
        languages=frozenset(service.languages),
        bsl=service.bsl,
        abuse_types=frozenset(service.abuse_types),
        accepting=service.accepting,
        status=service.status,
    )


@dataclass
class SearchIndex:
    version: tuple[Any, ...] | None = None
    entries: list[Entry] = field(default_factory=list)
    by_code: dict[str, list[int]] = field(default_factory=dict)
    national: list[int] = field(default_factory=list)
    max_age: float = 1.0
    _checked_at: float = float("-inf")
    # Bumped by every local commit: a check that started before a commit must not mark the index fresh.
    _generation: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def invalidate(self) -> None:
        self._generation += 1
        self._checked_at = float("-inf")

    def _fresh_as_of(self, checked_at: float, generation: int) -> None:
        if generation == self._generation:
            self._checked_at = checked_at

    async def ensure_current(self, session: AsyncSession) -> None:
        if time.monotonic() - self._checked_at < self.max_age:
            return
        checked_at, generation = time.monotonic(), self._generation
        version = await directory_version(session)
        if version == self.version:
            self._fresh_as_of(checked_at, generation)
            return
        async with self._lock:
            if version == self.version:
                return
            self._fresh_as_of(checked_at, generation)
            rows = (await session.exec(select(Service, Organisation).join(Organisation).order_by(col(Service.id)))).all()
            self.rebuild([entry_for(s, o) for s, o in rows], version)

    def rebuild(self, entries: Sequence[Entry], version: tuple[Any, ...] | None) -> None:
        by_code: dict[str, list[int]] = {}
        national: list[int] = []
        for i, entry in enumerate(entries):
            for code in entry.coverage:
                if code == NATIONAL:
                    national.append(i)
                else:
                    by_code.setdefault(canonical_code(code), []).append(i)
        self.entries, self.by_code, self.national, self.version = list(entries), by_code, national, version

    def matching(self, area: ResolvedArea, filters: SearchFilters) -> list[tuple[Entry, str | None]]:
        """Services covering the area that pass the filters, with why they cover it: the main authority's
        first, then the other material candidates', then national ones, each by id."""
        main: set[int] = set()
        local: set[int] = set()
        for code in area.codes:
            (main if code in area.area.main or not area.area.main else local).update(self.by_code.get(code, ()))
        local -= main
        results = []
        for group in (sorted(main), sorted(local), [i for i in self.national if i not in local | main]):
            for i in group:
                entry = self.entries[i]
                if entry.matches(filters):
                    results.append((entry, coverage_reason(entry.coverage, area)))
        return results

    def search(self, area: ResolvedArea, filters: SearchFilters) -> list[dict[str, Any]]:
        return [{**entry.view, "match_reason": reason} for entry, reason in self.matching(area, filters)]

    def search_json(self, area: ResolvedArea, filters: SearchFilters, *, contacts: bool = True) -> bytes:
        """The same result as ``search``, encoded as the API's JSON array (``contacts=False``: without
        the contact fields, for an unauthenticated caller)."""
        parts = [f'{entry.json_head if contacts else entry.public_json_head},"match_reason":{json.dumps(reason)}}}'
                 for entry, reason in self.matching(area, filters)]
        return ("[" + ",".join(parts) + "]").encode()


async def directory_version(session: AsyncSession) -> tuple[Any, ...]:
    """Changes whenever a service or organisation is created, updated or deleted."""
    services = (await session.exec(select(func.count(col(Service.id)), func.max(Service.updated_at)))).one()
    organisations = (
        await session.exec(select(func.count(col(Organisation.id)), func.max(Organisation.updated_at)))
    ).one()
    return (*services, *organisations)
