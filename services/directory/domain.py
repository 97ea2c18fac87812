"""Area resolution and service search: pure functions over directory rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.reference import DISTRICT_RE, NATIONAL, normalise_postcode, postcode_district


@dataclass(frozen=True)
class AreaPart:
    lad_code: str
    lad_name: str
    utla_code: str
    icb_code: str
    share: float


@dataclass(frozen=True)
class ResolvedArea:
    query: str
    district: str | None
    parts: tuple[AreaPart, ...]

    @property
    def codes(self) -> frozenset[str]:
        codes = {self.query}
        if self.district:
            codes.add(self.district)
        for part in self.parts:
            codes.update((part.lad_code, part.utla_code, part.icb_code))
        return frozenset(codes)


class InvalidArea(ValueError):
    pass


def area_key(area: str) -> tuple[str, str | None]:
    """Normalise a query: a full postcode or a district becomes its district; a code stays a code."""
    value = normalise_postcode(area)
    if not value:
        raise InvalidArea("An area is required: a postcode, a postcode district or an ONS/ICB code.")
    district = postcode_district(value)
    if district:
        return district, district
    if DISTRICT_RE.match(value):
        return value, value
    if len(value) == 9 and value[0] in "EWSN" and value[1:].isdigit():
        return value, None
    raise InvalidArea(f"'{area}' is neither a postcode, a postcode district nor a 9-character ONS code.")


def coverage_reason(coverage: Sequence[str], area: ResolvedArea) -> str | None:
    """Why a service's coverage includes the area, or ``None`` when it does not."""
    wanted = area.codes
    for code in coverage:
        if code in wanted:
            names = {p.lad_code: p.lad_name for p in area.parts}
            return f"serves {names[code]} ({code})" if code in names else f"covers {code}"
    if NATIONAL in coverage:
        return "national service"
    return None


def parts_from_rows(rows: Iterable[tuple[str, str, str, str, float]]) -> tuple[AreaPart, ...]:
    return tuple(sorted((AreaPart(*row) for row in rows), key=lambda p: (-p.share, p.lad_code)))
