"""Directory HTTP API: area resolution, service search, organisations, provider authentication."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel
from sqlmodel import col, select

from services.directory.domain import InvalidArea, ResolvedArea, area_key, coverage_reason, parts_from_rows
from services.directory.store import DistrictArea, Organisation, OrganisationBase, Service, ServiceBase
from shared.auth import ServiceCaller, hash_api_key
from shared.directory_contract import AreaResolution, DirectorySnapshot, ServiceRecord
from shared.events import utcnow
from shared.service import SessionDep
from sqlmodel.ext.asyncio.session import AsyncSession

router = APIRouter(tags=["directory"])


class AreaPartOut(BaseModel):
    lad_code: str
    lad_name: str
    utla_code: str
    icb_code: str
    share: float


class AreaOut(BaseModel):
    query: str
    district: str | None
    parts: list[AreaPartOut]


class ServicePublic(ServiceBase):
    id: str
    organisation_id: str
    organisation_name: str
    organisation_by_and_for: list[str]
    match_reason: str | None = None


class OrganisationPublic(OrganisationBase):
    id: str


class ProviderKey(BaseModel):
    api_key: str


class ProviderIdentity(BaseModel):
    organisation_id: str
    name: str


async def resolve_area(session: AsyncSession, area: str) -> ResolvedArea:
    try:
        query, district = area_key(area)
    except InvalidArea as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    if district is None:
        return ResolvedArea(query, None, ())
    rows = (await session.exec(select(DistrictArea).where(DistrictArea.district == district))).all()
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Postcode district {district} is not in the gazetteer.")
    return ResolvedArea(
        query, district, parts_from_rows((r.lad_code, r.lad_name, r.utla_code, r.icb_code, r.share) for r in rows)
    )


@router.get("/areas/{area}", response_model=AreaOut, summary="Resolve a postcode or district to its areas")
async def get_area(area: str, session: SessionDep) -> AreaOut:
    resolved = await resolve_area(session, area)
    return AreaOut(
        query=resolved.query,
        district=resolved.district,
        parts=[AreaPartOut(**part.__dict__) for part in resolved.parts],
    )


@router.get("/services", response_model=list[ServicePublic], summary="Services that cover an area")
async def search_services(
    session: SessionDep,
    area: Annotated[str, Query(description="Postcode, postcode district, or ONS/ICB code")],
    service_type: Annotated[list[str] | None, Query(alias="type")] = None,
    community: Annotated[str | None, Query(description="By-and-for community")] = None,
    accepting: bool | None = None,
) -> list[ServicePublic]:
    resolved = await resolve_area(session, area)
    statement = select(Service, Organisation).join(Organisation).order_by(col(Service.id))
    if service_type:
        statement = statement.where(col(Service.service_type).in_(service_type))
    if accepting is not None:
        statement = statement.where(Service.accepting == accepting)
    results = []
    for service, organisation in (await session.exec(statement)).all():
        reason = coverage_reason(service.coverage, resolved)
        if reason is None:
            continue
        if community and community not in service.by_and_for and community not in organisation.by_and_for:
            continue
        results.append(
            ServicePublic(
                **service.model_dump(exclude={"updated_at"}),
                organisation_name=organisation.name,
                organisation_by_and_for=organisation.by_and_for,
                match_reason=reason,
            )
        )
    return results


@router.get("/services/{service_id}", response_model=ServicePublic)
async def get_service(service_id: str, session: SessionDep) -> ServicePublic:
    row = (
        await session.exec(select(Service, Organisation).join(Organisation).where(Service.id == service_id))
    ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No service with id '{service_id}'.")
    service, organisation = row
    return ServicePublic(
        **service.model_dump(exclude={"updated_at"}),
        organisation_name=organisation.name,
        organisation_by_and_for=organisation.by_and_for,
    )


@router.get("/organisations", response_model=list[OrganisationPublic])
async def list_organisations(session: SessionDep) -> list[Organisation]:
    return list((await session.exec(select(Organisation).order_by(col(Organisation.id)))).all())


@router.get("/organisations/{organisation_id}", response_model=OrganisationPublic)
async def get_organisation(organisation_id: str, session: SessionDep) -> Organisation:
    organisation = await session.get(Organisation, organisation_id)
    if organisation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No organisation with id '{organisation_id}'.")
    return organisation


@router.post(
    "/internal/providers/authenticate",
    response_model=ProviderIdentity,
    tags=["internal"],
    summary="Which provider holds this API key (for notify)",
)
async def authenticate_provider(body: ProviderKey, session: SessionDep, _caller: ServiceCaller) -> ProviderIdentity:
    organisation = (
        await session.exec(select(Organisation).where(Organisation.api_key_hash == hash_api_key(body.api_key)))
    ).first()
    if organisation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No provider holds that API key.")
    return ProviderIdentity(organisation_id=organisation.id, name=organisation.name)


@router.get(
    "/internal/snapshot",
    response_model=DirectorySnapshot,
    tags=["internal"],
    summary="Every service and district resolution, for the router's in-memory copy",
)
async def snapshot(session: SessionDep, _caller: ServiceCaller) -> DirectorySnapshot:
    rows = (await session.exec(select(Service, Organisation).join(Organisation).order_by(col(Service.id)))).all()
    services = tuple(
        ServiceRecord(
            **service.model_dump(exclude={"updated_at", "by_and_for"}),
            organisation_name=organisation.name,
            by_and_for=tuple(sorted(set(service.by_and_for) | set(organisation.by_and_for))),
        )
        for service, organisation in rows
    )
    districts: dict[str, list[DistrictArea]] = {}
    for area in (await session.exec(select(DistrictArea).order_by(col(DistrictArea.district)))).all():
        districts.setdefault(area.district, []).append(area)
    areas = tuple(
        AreaResolution(
            district=district,
            lad_codes=tuple(p.lad_code for p in sorted(parts, key=lambda p: (-p.share, p.lad_code))),
            utla_codes=tuple(sorted({p.utla_code for p in parts})),
            icb_codes=tuple(sorted({p.icb_code for p in parts})),
            names={p.lad_code: p.lad_name for p in parts},
        )
        for district, parts in districts.items()
    )
    latest = max((service.updated_at for service, _ in rows), default=utcnow())
    return DirectorySnapshot(
        version=f"{len(services)}:{latest.isoformat()}", generated_at=utcnow(), services=services, areas=areas
    )
