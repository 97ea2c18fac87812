"""Directory HTTP API: areas, service search, organisations and services (ops), HSDS and FHIR views,
and the internal endpoints the router and notify call. Thin: rules live in ``domain``, ``gazetteer``,
``search`` and ``hsds``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory import fhir_view, gazetteer, hsds
from services.directory.default_gazetteer import attribution, default_gazetteer
from services.directory.domain import (
    MAX_OPEN_OFFERS,
    InvalidArea,
    OrganisationCreate,
    OrganisationIn,
    ResolvedArea,
    ServiceCreate,
    ServiceIn,
    WaitBand,
)
from services.directory.search import SearchFilters, SearchIndex, without_contacts
from services.directory.store import (
    Organisation,
    OrganisationBase,
    ProviderKey,
    Service,
    ServiceBase,
)
from shared.audit import record
from shared.auth import Caller, CallerKind, NotifyCaller, OpsCaller, OptionalKey, RouterCaller
from shared.directory_contract import DirectorySnapshot, ProviderDelivery, ServiceRecord
from shared.egress import policy_for, registration_refusal
from shared.events import AreaStatus, DirectoryChanged, RiskBand, utcnow
from shared.fhir import FhirResponse
from shared.geography import COUNTRY_NAMES, describe
from shared.openapi import errors, fhir_resource
from shared.outbox import enqueue
from shared.problems import problem
from shared.reference import AbuseType, Community, Gender, ServiceStatus, ServiceType
from shared.service import RuntimeDep, SessionDep

T = TypeVar("T")
router = APIRouter(tags=["directory"])
ops = APIRouter(tags=["ops"])
internal = APIRouter(tags=["internal"])


class AreaPartOut(BaseModel):
    lad_code: str
    lad_name: str
    utla_code: str
    icb_code: str
    share: float


class AreaCodeOut(BaseModel):
    code: str
    name: str | None
    share: float


class AreaOut(BaseModel):
    """A resolved area. ``parts`` are the local authorities with their shares (``icb_code`` there is each
    authority's main ICB); ``icbs`` are the area's own, from its sub-ICB shares. ``material`` lists the codes
    that make a service local (a candidate holding at least 5% of the postcodes, and the main one)."""

    query: str
    kind: str
    status: AreaStatus
    precision: str
    sector: str | None
    district: str | None
    parts: list[AreaPartOut]
    upper_tiers: list[AreaCodeOut] = []
    icbs: list[AreaCodeOut] = []
    region: AreaCodeOut | None = None
    country: AreaCodeOut | None = None
    material: list[str] = []
    source: str | None = None
    note: str | None = None
    centroid: tuple[float, float] | None = None


class GazetteerImportOut(BaseModel):
    file_name: str
    imported_at: datetime
    postcodes: int
    districts: int


class GazetteerOut(BaseModel):
    """Which gazetteer is in force: the shipped ONS-derived default, or an ONSPD/NSPL import over it."""

    source: str
    version: str
    default: str
    imported_districts: int
    imports: list[GazetteerImportOut]
    attribution: list[str]


class ServicePublic(ServiceBase):
    id: str
    organisation_id: str
    organisation_name: str
    organisation_by_and_for: list[str]
    match_reason: str | None = None


class OrganisationPublic(OrganisationBase):
    id: str
    signing_secret_count: int = 0

    @classmethod
    def of(cls, org: Organisation, *, contacts: bool = True) -> OrganisationPublic:
        view = org.model_dump(exclude={"signing_secrets", "updated_at"})
        return cls(**(view if contacts else without_contacts(view)), signing_secret_count=len(org.signing_secrets))


class CapacityUpdate(BaseModel):
    """What a provider's capacity changes day to day (ops set it on the provider's word)."""

    accepting: bool | None = None
    status: ServiceStatus | None = None
    max_open_offers: int | None = Field(default=None, ge=0, le=MAX_OPEN_OFFERS)
    wait_band: WaitBand | None = None


class HsdsImportResult(BaseModel):
    organisations: int
    services: int


async def contacts_visible(request: Request, session: SessionDep, key: OptionalKey) -> bool:
    """Public routes show contact details and webhook URLs to ops only (issue 13); without a credential,
    or with any other, the same answer without them."""
    if not key:
        return False
    caller = await request.app.state.verify_ops(request, key, session)
    return caller is not None and caller.kind is CallerKind.ops


ContactsVisible = Annotated[bool, Depends(contacts_visible)]
# In the OpenAPI: a credential is optional here (``{}``: none at all is fine), so no 401 or 403 either.
OPTIONAL_CREDENTIAL: dict[str, Any] = {"security": [{}]}  # added to the bearer and apiKey schemes


def _index(request: Request) -> SearchIndex:
    return request.app.state.search_index  # type: ignore[no-any-return]


async def resolve_area(session: AsyncSession, area: str) -> ResolvedArea:
    """Invalid format → 400, well-formed but unknown → 404: the caller can tell which it was."""
    try:
        return await gazetteer.resolve(session, area)
    except InvalidArea as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    except gazetteer.AreaNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.get("/areas/{area}", response_model=AreaOut, summary="Resolve a postcode, sector, district or code",
            responses=errors(400, 404))
async def get_area(area: str, session: SessionDep) -> AreaOut:
    resolved = await resolve_area(session, area)
    located, names = resolved.area, resolved.names

    def coded(code: str | None, share: float = 1.0) -> AreaCodeOut | None:
        return AreaCodeOut(code=code, name=names.get(code) or COUNTRY_NAMES.get(code), share=share) if code else None

    return AreaOut(
        query=resolved.query,
        kind=resolved.kind,
        status=located.status,
        precision=located.precision,
        sector=located.sector,
        district=located.district,
        parts=[AreaPartOut(**part.__dict__) for part in resolved.parts],
        upper_tiers=[AreaCodeOut(code=s.code, name=names.get(s.code), share=s.share) for s in located.upper_tiers],
        icbs=[AreaCodeOut(code=s.code, name=names.get(s.code), share=s.share) for s in located.icbs],
        region=coded(located.region),
        country=coded(located.country),
        material=list(located.material),
        source=located.source,
        note=None if located.status is AreaStatus.england else describe(default_gazetteer(), located),
        centroid=resolved.centroid,
    )


@router.get("/gazetteer", response_model=GazetteerOut, summary="Which gazetteer is in force, and its attribution")
async def get_gazetteer(session: SessionDep) -> GazetteerOut:
    status_ = await gazetteer.gazetteer_status(session)
    return GazetteerOut(
        source=status_.source, version=status_.version, default=default_gazetteer().version,
        imported_districts=status_.imported_districts,
        imports=[GazetteerImportOut.model_validate(i, from_attributes=True) for i in status_.imports],
        attribution=list(attribution()),
    )


@router.get("/services", response_model=list[ServicePublic], summary="Services that cover an area",
            response_class=JSONResponse, responses=errors(400, 404), openapi_extra=OPTIONAL_CREDENTIAL)
async def search_services(
    request: Request,
    session: SessionDep,
    contacts: ContactsVisible,
    area: Annotated[str, Query(description="Postcode, sector, postcode district, or ONS (LAD/UTLA/ICB) code")],
    service_type: Annotated[list[ServiceType] | None, Query(alias="type")] = None,
    community: Annotated[Community | None, Query(description="By-and-for community")] = None,
    accepting: Annotated[bool | None, Query(description="Accepting referrals now (and active)")] = None,
    service_status: Annotated[ServiceStatus | None, Query(alias="status")] = None,
    gender: Gender | None = None,
    age: Annotated[int | None, Query(ge=0, le=120)] = None,
    risk: RiskBand | None = None,
    nrpf: Annotated[bool | None, Query(description="The survivor has no recourse to public funds")] = None,
    language: Annotated[str | None, Query(max_length=20)] = None,
    bsl: bool | None = None,
    abuse_type: AbuseType | None = None,
) -> Response:
    resolved = await resolve_area(session, area)
    index = _index(request)
    await index.ensure_current(session)
    filters = SearchFilters(
        service_types=frozenset(service_type or ()), community=community, accepting=accepting,
        status=service_status, gender=gender, age=age, risk_level=risk, nrpf=nrpf, language=language, bsl=bsl,
        abuse_type=abuse_type,
    )
    # The index's pre-encoded JSON: validating thousands of rows per request would cost more than the search.
    return Response(index.search_json(resolved, filters, contacts=contacts), media_type="application/json")


async def _service_view(session: AsyncSession, service_id: str) -> tuple[Service, Organisation]:
    row = (
        await session.exec(select(Service, Organisation).join(Organisation).where(Service.id == service_id))
    ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No service with id '{service_id}'.")
    return row[0], row[1]


def _public(service: Service, organisation: Organisation, *, contacts: bool = True) -> ServicePublic:
    view = service.model_dump(exclude={"updated_at"})
    return ServicePublic(**(view if contacts else without_contacts(view)), organisation_name=organisation.name,
                         organisation_by_and_for=organisation.by_and_for)


@router.get("/services/{service_id}", response_model=ServicePublic, responses=errors(404), openapi_extra=OPTIONAL_CREDENTIAL)
async def get_service(service_id: str, session: SessionDep, contacts: ContactsVisible) -> ServicePublic:
    return _public(*await _service_view(session, service_id), contacts=contacts)


@router.get("/organisations", response_model=list[OrganisationPublic], openapi_extra=OPTIONAL_CREDENTIAL)
async def list_organisations(session: SessionDep, contacts: ContactsVisible) -> list[OrganisationPublic]:
    return [OrganisationPublic.of(o, contacts=contacts)
            for o in (await session.exec(select(Organisation).order_by(col(Organisation.id)))).all()]


async def _organisation(session: AsyncSession, organisation_id: str) -> Organisation:
    organisation = await session.get(Organisation, organisation_id)
    if organisation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No organisation with id '{organisation_id}'.")
    return organisation


@router.get("/organisations/{organisation_id}", response_model=OrganisationPublic, responses=errors(404), openapi_extra=OPTIONAL_CREDENTIAL)
async def get_organisation(organisation_id: str, session: SessionDep, contacts: ContactsVisible) -> OrganisationPublic:
    return OrganisationPublic.of(await _organisation(session, organisation_id), contacts=contacts)


@router.get("/organisations/{organisation_id}/services", response_model=list[ServicePublic], responses=errors(404),
            summary="An organisation's services, whatever their area (for editing the directory)")
async def organisation_services(organisation_id: str, session: SessionDep) -> list[ServicePublic]:
    organisation = await _organisation(session, organisation_id)
    rows = (await session.exec(select(Service).where(Service.organisation_id == organisation_id)
                               .order_by(col(Service.id)))).all()
    return [_public(service, organisation) for service in rows]


# --- Ops: organisations and services --------------------------------------------------------------


def _changed(session: AsyncSession, caller: Caller, entity: str, entity_id: str, change: str) -> None:
    """Tell the other services, and record which ops user made the change."""
    record(session, caller, f"{change}-{entity}", case_id=None, detail=f"{entity} {entity_id}")
    enqueue(session, DirectoryChanged(entity=entity, entity_id=entity_id, change=change))  # type: ignore[arg-type]


async def _check_webhook_urls(runtime: RuntimeDep, organisations: list[tuple[str, OrganisationIn]]) -> None:
    """422 unless every webhook URL is one Pathways may call (``shared.egress``: no private, loopback,
    link-local… address, now or by the name's current resolution; delivery checks again)."""
    policy = policy_for(runtime.settings)
    refusals = []
    for organisation_id, body in organisations:
        if body.webhook_url is not None and (why := await registration_refusal(str(body.webhook_url), policy)):
            refusals.append(f"{organisation_id}: webhook_url refused: {why}")
    if refusals:
        raise HTTPException(422, detail="; ".join(refusals))


@ops.post("/organisations", response_model=OrganisationPublic, status_code=201, summary="Add an organisation",
          responses=errors(409, 422))
async def create_organisation(body: OrganisationCreate, runtime: RuntimeDep,
                              session: SessionDep, caller: OpsCaller) -> OrganisationPublic:
    await _check_webhook_urls(runtime, [(body.id, body)])
    async with runtime.db.transaction(session):
        if await session.get(Organisation, body.id) is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"Organisation '{body.id}' already exists.")
        organisation = Organisation(**body.columns())
        session.add(organisation)
        _changed(session, caller, "organisation", body.id, "created")
        return _readable(lambda: OrganisationPublic.of(organisation))


@ops.put("/organisations/{organisation_id}", response_model=OrganisationPublic, summary="Replace an organisation",
         responses=errors(404, 422))
async def replace_organisation(
    organisation_id: str, body: OrganisationIn, runtime: RuntimeDep, session: SessionDep, caller: OpsCaller
) -> OrganisationPublic:
    await _check_webhook_urls(runtime, [(organisation_id, body)])
    async with runtime.db.transaction(session):
        organisation = await _organisation(session, organisation_id)
        _assign(session, organisation, body.columns())
        _changed(session, caller, "organisation", organisation_id, "updated")
        return _readable(lambda: OrganisationPublic.of(organisation))


@ops.delete("/organisations/{organisation_id}", status_code=204, summary="Remove an organisation",
            responses=errors(404, 409))
async def delete_organisation(organisation_id: str, runtime: RuntimeDep,
                              session: SessionDep, caller: OpsCaller) -> Response:
    async with runtime.db.transaction(session):
        organisation = await _organisation(session, organisation_id)
        if (await session.exec(select(Service.id).where(Service.organisation_id == organisation_id).limit(1))).first():
            raise HTTPException(status.HTTP_409_CONFLICT,
                                detail="The organisation still has services: remove or move them first.")
        # Its keys go with it (they could reach nothing); their issue and revocation stay in the audit trail.
        for key in (await session.exec(select(ProviderKey).where(ProviderKey.organisation_id == organisation_id))).all():
            await session.delete(key)
        await session.flush()
        await session.delete(organisation)
        _changed(session, caller, "organisation", organisation_id, "deleted")
    return Response(status_code=204)


async def _check_organisation(session: AsyncSession, organisation_id: str) -> None:
    if await session.get(Organisation, organisation_id) is None:
        raise HTTPException(422,
                            detail=f"No organisation with id '{organisation_id}' to own the service.")


@ops.post("/services", response_model=ServicePublic, status_code=201, summary="Add a service",
          responses=errors(409, 422))
async def create_service(body: ServiceCreate, runtime: RuntimeDep,
                         session: SessionDep, caller: OpsCaller) -> ServicePublic:
    async with runtime.db.transaction(session):
        await _check_organisation(session, body.organisation_id)
        if await session.get(Service, body.id) is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"Service '{body.id}' already exists.")
        session.add(Service(**body.columns()))
        _changed(session, caller, "service", body.id, "created")
        view = await _service_view(session, body.id)
        return _readable(lambda: _public(*view))


@ops.put("/services/{service_id}", response_model=ServicePublic, summary="Replace a service",
         responses=errors(404, 422))
async def replace_service(service_id: str, body: ServiceIn, runtime: RuntimeDep,
                          session: SessionDep, caller: OpsCaller) -> ServicePublic:
    async with runtime.db.transaction(session):
        service = await session.get(Service, service_id)
        if service is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No service with id '{service_id}'.")
        await _check_organisation(session, body.organisation_id)
        _assign(session, service, body.columns())
        _changed(session, caller, "service", service_id, "updated")
        view = await _service_view(session, service_id)
        return _readable(lambda: _public(*view))


@ops.patch("/services/{service_id}/capacity", response_model=ServicePublic,
           summary="Pause or resume referrals, change status or capacity", responses=errors(404, 422))
async def update_capacity(
    service_id: str, body: CapacityUpdate, runtime: RuntimeDep, session: SessionDep, caller: OpsCaller
) -> ServicePublic:
    async with runtime.db.transaction(session):
        service = await session.get(Service, service_id)
        if service is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No service with id '{service_id}'.")
        merged = {**service.model_dump(exclude={"updated_at", "id"}), **body.model_dump(exclude_unset=True)}
        try:
            checked = ServiceIn.model_validate(merged)  # the whole service must stay valid
        except ValidationError as exc:
            raise _unprocessable(exc) from exc
        _assign(session, service, checked.columns())
        _changed(session, caller, "service", service_id, "updated")
        view = await _service_view(session, service_id)
        return _readable(lambda: _public(*view))


def _readable(build: Callable[[], T]) -> T:
    """The public view of a change, built before its transaction commits: what could not be read back
    (a value the public model refuses) is refused with 422 and never stored."""
    try:
        return build()
    except ValidationError as exc:
        raise _unprocessable(exc) from exc


def _unprocessable(exc: ValidationError) -> HTTPException:
    errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    return HTTPException(422, detail=errors)


@ops.delete("/services/{service_id}", status_code=204, summary="Remove a service", responses=errors(404))
async def delete_service(service_id: str, runtime: RuntimeDep,
                         session: SessionDep, caller: OpsCaller) -> Response:
    async with runtime.db.transaction(session):
        service = await session.get(Service, service_id)
        if service is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No service with id '{service_id}'.")
        await session.delete(service)
        _changed(session, caller, "service", service_id, "deleted")
    return Response(status_code=204)


# --- Open Referral UK / HSDS and FHIR --------------------------------------------------------------


@router.get("/hsds", summary="The whole directory as Open Referral UK / HSDS 3 JSON", openapi_extra=OPTIONAL_CREDENTIAL)
async def export_hsds(session: SessionDep, contacts: ContactsVisible) -> dict[str, Any]:
    organisations = list((await session.exec(select(Organisation).order_by(col(Organisation.id)))).all())
    services = list((await session.exec(select(Service).order_by(col(Service.id)))).all())
    return hsds.export_document(organisations, services, contacts=contacts)


@ops.post("/hsds", response_model=HsdsImportResult, summary="Import (create or replace) from HSDS JSON",
          responses=errors(422))
async def import_hsds(
    document: Annotated[dict[str, Any], Body()], runtime: RuntimeDep, session: SessionDep, caller: OpsCaller
) -> HsdsImportResult | JSONResponse:
    # Webhook URLs are checked before the transaction: resolving names must not hold the writer.
    try:
        await _check_webhook_urls(runtime, [(o.id, o) for o in hsds.import_document(document, {})[0]])
    except hsds.HsdsImportError:
        pass  # reported below, with every bad record
    async with runtime.db.transaction(session):
        known = {o.id: list(o.signing_secrets) for o in (await session.exec(select(Organisation))).all()}
        try:
            organisations, services = hsds.import_document(document, known)
        except hsds.HsdsImportError as exc:
            return problem(422, str(exc), errors=exc.errors)
        await _upsert(session, caller, organisations, services)
    return HsdsImportResult(organisations=len(organisations), services=len(services))


async def _upsert(session: AsyncSession, caller: Caller, organisations: list[OrganisationCreate], services: list[ServiceCreate]) -> None:
    for body in organisations:
        await _upsert_row(session, Organisation, body.id, body.columns())
    await session.flush()  # services reference their organisations
    for svc in services:
        await _upsert_row(session, Service, svc.id, svc.columns())
    _changed(session, caller, "organisation", "*", "imported")


async def _upsert_row(session: AsyncSession, table: type[Organisation | Service], key: str,
                      columns: dict[str, Any]) -> None:
    existing = await session.get(table, key)
    if existing is None:
        session.add(table(**columns))
    else:
        _assign(session, existing, columns)


def _assign(session: AsyncSession, row: Organisation | Service, columns: dict[str, Any]) -> None:
    """Replace a row's editable fields; ``updated_at`` moves so the search index notices."""
    for key, value in columns.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.add(row)


@router.get("/fhir/HealthcareService", summary="Services as a FHIR searchset of HealthcareService",
            response_class=FhirResponse, responses={**fhir_resource("Bundle", description="A searchset Bundle"),
                                                    **errors(400, 404)}, openapi_extra=OPTIONAL_CREDENTIAL)
async def fhir_services(
    request: Request,
    session: SessionDep,
    contacts: ContactsVisible,
    area: Annotated[str | None, Query(description="Only services covering this area")] = None,
) -> JSONResponse:
    wanted: set[str] = set()
    if area:
        resolved = await resolve_area(session, area)
        index = _index(request)
        await index.ensure_current(session)
        wanted = {s["id"] for s in index.search(resolved, SearchFilters())}
    rows = (await session.exec(select(Service, Organisation).join(Organisation).order_by(col(Service.id)))).all()
    resources = [fhir_view.healthcare_service(s, o, contacts=contacts) for s, o in rows if not area or s.id in wanted]
    return FhirResponse(fhir_view.bundle(resources))


@router.get("/fhir/HealthcareService/{service_id}", summary="One service as a FHIR HealthcareService",
            response_class=FhirResponse, responses={**fhir_resource("HealthcareService"), **errors(404)}, openapi_extra=OPTIONAL_CREDENTIAL)
async def fhir_service(service_id: str, session: SessionDep, contacts: ContactsVisible) -> JSONResponse:
    return FhirResponse(fhir_view.healthcare_service(*await _service_view(session, service_id), contacts=contacts))


# --- Internal: router and notify -------------------------------------------------------------------


@internal.get("/internal/organisations/{organisation_id}/delivery", response_model=ProviderDelivery,
              summary="How notify reaches a provider: channel, webhook URL, signing secrets", responses=errors(404))
async def provider_delivery(organisation_id: str,
                            session: SessionDep, _caller: NotifyCaller) -> ProviderDelivery:
    organisation = await _organisation(session, organisation_id)
    return ProviderDelivery(
        organisation_id=organisation.id,
        channel=organisation.delivery,
        webhook_url=organisation.webhook_url if organisation.delivery == "webhook" else None,
        signing_secrets=tuple(organisation.signing_secrets) if organisation.delivery == "webhook" else (),
    )


@internal.get("/internal/snapshot", response_model=DirectorySnapshot,
              summary="Every service, and the gazetteer version in force, for the router's in-memory copy")
async def snapshot(session: SessionDep, _caller: RouterCaller) -> DirectorySnapshot:
    rows = (await session.exec(select(Service, Organisation).join(Organisation).order_by(col(Service.id)))).all()
    services = tuple(
        ServiceRecord(
            **service.model_dump(exclude={"updated_at", "by_and_for"}),
            organisation_name=organisation.name,
            by_and_for=tuple(sorted(set(service.by_and_for) | set(organisation.by_and_for))),
        )
        for service, organisation in rows
    )
    latest = max((service.updated_at for service, _ in rows), default=utcnow())
    return DirectorySnapshot(
        version=f"{len(services)}:{latest.isoformat()}", generated_at=utcnow(), services=services,
        gazetteer_version=(await gazetteer.gazetteer_status(session)).version,
    )


@internal.get("/internal/gazetteer", summary="The gazetteer in force (default with imports laid over), for the router's copy",
              responses={200: {"description": "``shared.geography.Gazetteer`` as JSON: sectors and districts → "
                               "[[LAD, share], …], [[ICB, share], …]; LAD → [upper tier, region, main ICB]; names",
                               "content": {"application/json": {"schema": {"type": "object"}}}}})
async def internal_gazetteer(request: Request, session: SessionDep, _caller: RouterCaller) -> Response:
    version = (await gazetteer.gazetteer_status(session)).version
    cached: tuple[str, bytes] | None = getattr(request.app.state, "gazetteer_json", None)
    if cached is None or cached[0] != version:
        # Encoded once per version: about a megabyte, read by each router on start and after an import.
        cached = (version, (await gazetteer.gazetteer_in_force(session, version)).model_dump_json().encode())
        request.app.state.gazetteer_json = cached
    return Response(cached[1], media_type="application/json")


