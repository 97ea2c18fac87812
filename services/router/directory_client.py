"""The router's reads of the directory (internal HTTP)."""

from __future__ import annotations

import httpx

from services.router.domain import Candidate
from shared.reference import NATIONAL


class DirectoryUnavailable(RuntimeError):
    pass


async def candidates_for(http: httpx.AsyncClient, base_url: str, district: str) -> list[Candidate]:
    """Services covering the district (local and national), as routing candidates."""
    try:
        response = await http.get(f"{base_url}/services", params={"area": district})
    except httpx.HTTPError as exc:
        raise DirectoryUnavailable(type(exc).__name__) from exc
    if response.status_code == 404:
        # The district is not in the gazetteer: only national services can be found for it.
        response = await http.get(f"{base_url}/services", params={"area": "E92000001"})
    if response.status_code >= 400:
        raise DirectoryUnavailable(f"directory answered {response.status_code}")
    return [
        Candidate(
            service_id=s["id"],
            organisation_id=s["organisation_id"],
            name=s["name"],
            service_type=s["service_type"],
            by_and_for=frozenset(s["by_and_for"]) | frozenset(s["organisation_by_and_for"]),
            risk_levels=frozenset(s["risk_levels"]),
            accepting=s["accepting"] and s["status"] == "active",
            national=NATIONAL in s["coverage"],
            match_reason=s.get("match_reason") or "",
        )
        for s in response.json()
    ]
