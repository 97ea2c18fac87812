"""The directory's rules without I/O: validation, area parsing, the ONS file reader, search filters,
the HSDS round trip and the FHIR view."""

from __future__ import annotations

import io

import pytest
from fhir.resources.healthcareservice import HealthcareService
from pydantic import ValidationError

from services.directory import fhir_view, hsds
from services.directory.default_gazetteer import default_gazetteer
from services.directory.domain import (
    AreaKind,
    InvalidArea,
    OrganisationCreate,
    ResolvedArea,
    ServiceCreate,
    parse_area,
)
from services.directory.gazetteer import DistrictTable, GazetteerFormatError, read_onspd
from services.directory.sample import sample_directory
from services.directory.search import SearchFilters, SearchIndex, entry_for
from services.directory.store import Organisation, Service
from shared.geography import locate

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def service(**overrides: object) -> dict[str, object]:
    return {
        "id": "test-idva",
        "organisation_id": "test-org",
        "name": "Test IDVA (sample)",
        "service_type": "idva",
        "coverage": ["E08000035"],
        **overrides,
    }


# --- Validation ----------------------------------------------------------------------------------


def test_a_valid_service_is_normalised():
    s = ServiceCreate.model_validate(service(coverage=["ls7", "E08000035", "E08000035"], risk_levels=["high"]))
    assert s.coverage == ["E08000035", "LS7"]


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"service_type": "counselling"}, "service_type"),
        ({"coverage": []}, "at least one area"),
        ({"coverage": ["Leeds"]}, "neither an ONS area code"),
        ({"coverage": ["E05001234"]}, "cannot cover"),  # a ward: too small to be a service area
        ({"coverage": ["national", "E08000035"], "coverage_level": "national"}, "covers 'national' only"),
        ({"coverage": ["national"]}, "go together"),
        ({"service_type": "national-helpline"}, "covers 'national' or one nation's country code"),
        ({"service_type": "national-helpline", "coverage": ["W92000004", "S92000003"], "coverage_level": "national"},
         "go together"),
        ({"service_type": "marac", "coverage": ["national"], "coverage_level": "national"}, "never 'national'"),
        ({"service_type": "perpetrator-programme"}, "never a referral target"),
        ({"min_age": 18, "max_age": 16}, "min_age is above max_age"),
        ({"risk_levels": ["severe"]}, "unknown value"),
        ({"by_and_for": ["women"]}, "unknown value"),
        ({"abuse_types": ["coercive"]}, "unknown value"),
        ({"languages": ["Urdu"]}, "BCP 47"),
        ({"status": "closed"}, "status"),
        ({"response_sla_hours": {"high": 0}}, "greater than 0"),
        ({"id": "Has Spaces"}, "lower-case"),
        ({"unknown_field": 1}, "Extra inputs"),
    ],
)
def test_invalid_services_are_rejected_with_a_reason(overrides, complaint):
    with pytest.raises(ValidationError) as error:
        ServiceCreate.model_validate(service(**overrides))
    assert complaint in str(error.value)


def test_webhook_delivery_needs_an_https_url_and_a_whsec_secret():
    base = {"id": "org", "name": "Org (sample)", "delivery": "webhook"}
    with pytest.raises(ValidationError, match="needs a webhook_url"):
        OrganisationCreate.model_validate(base)
    with pytest.raises(ValidationError, match="must use https"):
        OrganisationCreate.model_validate({**base, "webhook_url": "http://provider.example/hook",
                                           "signing_secrets": [SECRET]})
    with pytest.raises(ValidationError, match="whsec_"):
        OrganisationCreate.model_validate({**base, "webhook_url": "https://provider.example/hook"})
    with pytest.raises(ValidationError, match="pattern"):
        OrganisationCreate.model_validate({**base, "webhook_url": "https://provider.example/hook",
                                           "signing_secrets": ["not-a-secret"]})
    # Two secrets while rotating is fine.
    ok = OrganisationCreate.model_validate({**base, "webhook_url": "https://provider.example/hook",
                                            "signing_secrets": [SECRET, SECRET.replace("M", "N")]})
    assert len(ok.signing_secrets) == 2


def test_organisation_communities_come_from_the_vocabulary():
    with pytest.raises(ValidationError, match="unknown value"):
        OrganisationCreate.model_validate({"id": "org", "name": "Org", "by_and_for": ["everyone"]})
    org = OrganisationCreate.model_validate(
        {"id": "org", "name": "Org", "by_and_for": ["gypsy-roma-traveller", "deaf"], "by_and_for_other": ["Jewish women"]}
    )
    assert org.by_and_for == ["deaf", "gypsy-roma-traveller"]


def test_the_sample_directory_is_valid_and_names_national_helplines_without_contact_details():
    organisations, services = sample_directory()
    helplines = {s.name: s for s in services if s.service_type == "national-helpline"}
    assert set(helplines) == {
        "National Domestic Abuse Helpline", "Galop", "Men's Advice Line", "Karma Nirvana",
        "Rape Crisis 24/7 Support Line", "Hourglass", "SignHealth", "Live Fear Free Helpline (Wales)",
        "Scotland's Domestic Abuse and Forced Marriage Helpline", "Domestic and Sexual Abuse Helpline (Northern Ireland)",
    }
    assert helplines["Live Fear Free Helpline (Wales)"].coverage == ["W92000004"]
    assert all(s.contact_phone is None and s.contact_email is None for s in helplines.values())
    assert all(o.contact_phone is None and o.contact_email is None for o, _ in organisations)
    local_names = [s.name for s in services if s.service_type != "national-helpline"]
    assert all("(sample)" in name for name in local_names)


@pytest.mark.parametrize(("icb", "lads"), [
    ("E54000054", {"E08000035", "E08000032"}),  # West Yorkshire: Leeds, Bradford
    ("E54000029", {"E09000030", "E09000012"}),  # North East London: Tower Hamlets, Hackney
    ("E54000036", {"E06000052", "E06000053"}),  # Cornwall and the Isles of Scilly
])
def test_the_sample_covers_three_icbs_with_each_kind_of_local_service(icb, lads):
    _, services = sample_directory()
    local = [s for s in services if icb in s.coverage or set(s.coverage) & lads]
    kinds = {s.service_type for s in local}
    assert {"idva", "health-idva", "marac", "community-outreach", "refuge"} <= kinds, icb
    assert all("(sample)" in s.name for s in local)


def test_the_sample_has_by_and_for_services_in_some_areas_and_deliberate_gaps_in_others():
    _, services = sample_directory()
    by_and_for_areas = {code for s in services if s.by_and_for and "national" not in s.coverage for code in s.coverage}
    assert "E08000035" in by_and_for_areas and "E54000029" in by_and_for_areas  # Leeds, North East London
    assert not by_and_for_areas & {"E06000052", "E06000053", "E54000036"}  # none in Cornwall
    havering = [s for s in services if "E09000016" in s.coverage]
    assert havering == []  # only ICB-wide services reach Havering


# --- Areas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "kind", "value", "district"),
    [
        ("ls7 3ab", AreaKind.postcode, "LS7 3AB", "LS7"),
        ("LS73AB", AreaKind.postcode, "LS7 3AB", "LS7"),
        ("EC1A 1BB", AreaKind.postcode, "EC1A 1BB", "EC1A"),
        ("LS7 3", AreaKind.sector, "LS7 3", "LS7"),
        ("ls7", AreaKind.district, "LS7", "LS7"),
        ("LS73", AreaKind.district, "LS73", "LS73"),  # without a space it is a district, as Royal Mail reads it
        ("e08000035", AreaKind.code, "E08000035", None),
    ],
)
def test_area_queries_are_classified(query, kind, value, district):
    parsed = parse_area(query)
    assert (parsed.kind, parsed.value, parsed.district) == (kind, value, district)


@pytest.mark.parametrize("query", ["", "   ", "not a place", "LS", "123", "LS7 3A", "E0800003", "<script>"])
def test_malformed_areas_are_invalid_not_a_crash(query):
    with pytest.raises(InvalidArea):
        parse_area(query)


# --- The ONS file reader -------------------------------------------------------------------------

ONSPD_HEADER = (
    "pcd,pcd2,pcds,dointr,doterm,oscty,ced,oslaua,osward,parish,usertype,oseast1m,osnrth1m,osgrdind,oshlthau,"
    "nhser,ctry,rgn,streg,pcon,eer,teclec,ttwa,pct,itl,statsward,oa01,casward,park,lsoa01,msoa01,ur01ind,oac01,"
    "oa11,lsoa11,msoa11,wz11,sicbl,bua11,buasd11,ru11ind,oac11,lat,long,lep1,lep2,pfa,imd,calncv,icb,oa21,"
    "lsoa21,msoa21"
)


def onspd_row(pcds: str, lad: str, icb: str, lat: str, long: str, *, county: str = "E99999999", doterm: str = "") -> str:
    """A row in the ONSPD column order; only the columns the gazetteer reads carry values."""
    values = dict.fromkeys(ONSPD_HEADER.split(","), "")
    values.update(pcd=pcds.replace(" ", ""), pcds=pcds, dointr="201001", doterm=doterm, oscty=county,
                  oslaua=lad, lat=lat, long=long, icb=icb)
    return ",".join(f'"{v}"' for v in values.values())


def test_the_reader_takes_onspd_rows_and_skips_terminated_postcodes():
    text = "\n".join([
        ONSPD_HEADER,
        # Synthetic "ZZ" postcodes (not real geography) in real LAD/ICB codes: a format test.
        onspd_row("ZZ1 1AA", "E08000035", "E54000054", "53.8", "-1.5"),
        onspd_row("ZZ1 1AB", "E07000008", "E54000056", "99.999999", "0.000000", county="E10000003"),
        onspd_row("ZZ1 1AD", "E08000035", "E54000054", "53.8", "-1.5", doterm="202001"),
    ])
    rows = list(read_onspd(io.StringIO(text)))
    assert [r.postcode for r in rows] == ["ZZ1 1AA", "ZZ1 1AB"]
    leeds, cambridge = rows
    assert (leeds.district, leeds.sector, leeds.utla_code, leeds.lat) == ("ZZ1", "ZZ1 1", "E08000035", 53.8)
    # A two-tier district's upper tier is its county; no grid reference means no position.
    assert (cambridge.utla_code, cambridge.lat) == ("E10000003", None)


def test_the_reader_also_takes_nspl_column_names():
    header = "pcd,pcds,doterm,cty,laua,lat,long,icb"
    text = f'{header}\n"ZZ11AA","ZZ1 1AA","","E99999999","E08000032","53.79","-1.75","E54000054"\n'
    (row,) = read_onspd(io.StringIO(text))
    assert (row.lad_code, row.icb_code) == ("E08000032", "E54000054")


def test_a_file_in_another_format_is_refused_with_the_missing_columns():
    with pytest.raises(GazetteerFormatError, match="oslaua or laua"):
        list(read_onspd(io.StringIO("postcode,lat,long\nZZ1 1AA,53.8,-1.5\n")))


def test_district_shares_count_live_postcodes_per_authority():
    text = "\n".join([
        ONSPD_HEADER,
        onspd_row("ZZ1 1AA", "E08000035", "E54000054", "53.80", "-1.50"),
        onspd_row("ZZ1 1AB", "E08000035", "E54000054", "53.82", "-1.52"),
        onspd_row("ZZ1 2AA", "E08000035", "E54000054", "53.84", "-1.54"),
        onspd_row("ZZ1 2AB", "E08000032", "E54000054", "53.86", "-1.56"),
    ])
    table = DistrictTable()
    for row in read_onspd(io.StringIO(text)):
        table.add(row)
    shares = {r["lad_code"]: r["share"] for r in table.district_rows({"E08000035": "Leeds"})}
    assert shares == {"E08000035": 0.75, "E08000032": 0.25}
    centroids = {c["area"]: (c["lat"], c["long"], c["postcodes"]) for c in table.centroid_rows()}
    assert centroids["ZZ1"] == (53.83, -1.53, 4) and centroids["ZZ1 2"] == (53.85, -1.55, 2)


def test_a_district_where_one_authority_lies_in_two_icbs_keeps_one_row_per_authority():
    """North Yorkshire is split between ICBs: one district can hold its postcodes in two of them."""
    table = DistrictTable()
    rows = [onspd_row("ZZ5 1AA", "E06000065", "E54000051", "54.0", "-1.5"),
            onspd_row("ZZ5 1AB", "E06000065", "E54000051", "54.0", "-1.5"),
            onspd_row("ZZ5 2AA", "E06000065", "E54000054", "54.0", "-2.0"),
            onspd_row("ZZ5 2AB", "E08000035", "E54000054", "53.8", "-1.5")]
    for row in read_onspd(io.StringIO("\n".join([ONSPD_HEADER, *rows]) + "\n")):
        table.add(row)
    district = sorted((r["lad_code"], r["icb_code"], r["share"]) for r in table.district_rows({}))
    assert district == [("E06000065", "E54000051", 0.75), ("E08000035", "E54000054", 0.25)]


# --- Search filters ------------------------------------------------------------------------------


def build(**overrides: object) -> tuple[Service, Organisation]:
    body = ServiceCreate.model_validate(service(**overrides))
    return Service(**body.columns()), Organisation(id=body.organisation_id, name="Org (sample)",
                                                   by_and_for=["deaf"] if overrides.get("id") == "deaf" else [])


def located(query: str) -> ResolvedArea:
    """An area as the directory resolves it from the shipped default gazetteer."""
    area = locate(default_gazetteer(), query)
    names = {c: n for c in area.material if (n := default_gazetteer().name(c))}
    return ResolvedArea(query, AreaKind.sector, area, (), names)


LEEDS = located("LS7 3")


@pytest.fixture
def index() -> SearchIndex:
    services = [
        build(id="idva", risk_levels=["high"]),
        build(id="paused", accepting=False),
        build(id="closed", status="temporarily-closed"),
        build(id="women-only", genders=["female"], min_age=16, abuse_types=["forced-marriage"]),
        build(id="no-nrpf", accepts_nrpf=False, service_type="refuge"),
        build(id="urdu", languages=["ur"], bsl=True),
        build(id="deaf", service_type="community-outreach"),  # by and for Deaf survivors through its organisation
        build(id="bradford", coverage=["E08000032"]),
        build(id="icb-wide", coverage=["E54000054"], coverage_level="regional"),
        build(id="helpline", service_type="national-helpline", coverage=["national"], coverage_level="national"),
    ]
    idx = SearchIndex()
    idx.rebuild([entry_for(s, o) for s, o in services], version=None)
    return idx


def ids(idx: SearchIndex, **filters: object) -> list[str]:
    return [s["id"] for s in idx.search(LEEDS, SearchFilters(**filters))]  # type: ignore[arg-type]


def test_search_by_area_lists_local_before_national_and_says_why(index):
    results = index.search(LEEDS, SearchFilters())
    assert [s["id"] for s in results][-1] == "helpline" and "bradford" not in [s["id"] for s in results]
    reasons = {s["id"]: s["match_reason"] for s in results}
    assert reasons["idva"] == "serves Leeds (E08000035)"
    assert reasons["icb-wide"] == "serves NHS West Yorkshire Integrated Care Board (E54000054)"
    assert reasons["helpline"] == "national service"


def test_search_in_a_sector_spanning_two_authorities_lists_the_main_authoritys_services_first(index):
    # BD3 7: Bradford 87%, Leeds 13% (both material).
    found = [s["id"] for s in index.search(located("BD3 7"), SearchFilters())]
    assert found[0] == "bradford" and "idva" in found and found[-1] == "helpline"


def test_a_service_keyed_on_a_july_2022_icb_code_matches_its_april_2024_successor():
    surrey = ServiceCreate.model_validate(service(id="surrey-2022", coverage=["E54000052"], coverage_level="regional"))
    sussex = ServiceCreate.model_validate(service(id="sussex-2022", coverage=["E54000053"], coverage_level="regional"))
    idx = SearchIndex()
    idx.rebuild([entry_for(Service(**s.columns()), Organisation(id="org", name="Org (sample)"))
                 for s in (surrey, sussex)], version=None)
    guildford = located("GU1 1")
    assert guildford.area.icbs[0].code == "E54000063"
    [(found, reason)] = [(s["id"], s["match_reason"]) for s in idx.search(guildford, SearchFilters())]
    assert found == "surrey-2022"
    assert reason == "serves NHS Surrey Heartlands Integrated Care Board (E54000063, formerly E54000052)"
    assert [s["id"] for s in idx.search(located("BN1 1"), SearchFilters())] == ["sussex-2022"]


def test_search_filters(index):
    assert ids(index, service_types=frozenset({"refuge", "national-helpline"})) == ["no-nrpf", "helpline"]
    assert ids(index, community="deaf") == ["deaf"]
    assert "paused" not in ids(index, accepting=True) and "closed" not in ids(index, accepting=True)
    assert set(ids(index, accepting=False)) == {"paused", "closed"}
    assert ids(index, status="temporarily-closed") == ["closed"]
    assert "women-only" not in ids(index, gender="male") and "women-only" in ids(index, gender="female")
    assert "women-only" not in ids(index, age=15) and "women-only" in ids(index, age=30)
    assert "idva" not in ids(index, risk_level="standard") and "idva" in ids(index, risk_level="high")
    assert "no-nrpf" not in ids(index, nrpf=True)
    assert "urdu" in ids(index, language="ur") and "urdu" not in ids(index, language="pl")
    assert ids(index, bsl=True) == ["urdu"]
    # A service with no abuse-type restriction serves every type.
    assert "women-only" in ids(index, abuse_type="forced-marriage") and "women-only" not in ids(index, abuse_type="fgm")
    assert "idva" in ids(index, abuse_type="fgm")


# --- Open Referral UK / HSDS and FHIR ------------------------------------------------------------


def sample_rows() -> tuple[list[Organisation], list[Service]]:
    organisations, services = sample_directory()
    orgs = [Organisation(**o.columns()) for o, _ in organisations]
    orgs.append(Organisation(**OrganisationCreate.model_validate({
        "id": "hook-provider", "name": "Hook Provider (sample)", "charity_number": "1234567", "ods_code": "ABC12",
        "delivery": "webhook", "webhook_url": "https://provider.example/hook", "signing_secrets": [SECRET],
        "contact_name": "Duty manager (sample)", "contact_email": "duty@provider.example",
        "contact_phone": "0113 496 0000", "website": "https://provider.example/", "by_and_for_other": ["Traveller women"],
    }).columns()))
    return orgs, [Service(**s.columns()) for s in services]


def test_hsds_round_trip_keeps_every_field_the_model_holds():
    organisations, services = sample_rows()
    document = hsds.export_document(organisations, services)
    assert SECRET not in str(document)  # secrets never leave in an export
    secrets = {o.id: list(o.signing_secrets) for o in organisations}
    imported_orgs, imported_services = hsds.import_document(document, secrets)
    assert [o.columns() for o in imported_orgs] == [
        OrganisationCreate.model_validate({**o.model_dump(exclude={"api_key_hash", "updated_at"})}).columns()
        for o in organisations
    ]
    by_id = {s.id: s for s in services}
    assert {s.id: s.columns() for s in imported_services} == {
        i: ServiceCreate.model_validate(s.model_dump(exclude={"updated_at"})).columns() for i, s in by_id.items()
    }


def test_hsds_import_without_the_secret_keeps_a_webhook_provider_on_polling():
    organisations, services = sample_rows()
    imported_orgs, _ = hsds.import_document(hsds.export_document(organisations, services))
    hook = next(o for o in imported_orgs if o.id == "hook-provider")
    assert hook.delivery == "poll" and str(hook.webhook_url) == "https://provider.example/hook"


def test_hsds_import_lists_every_invalid_record_with_where_and_why():
    document = {"organizations": [{"id": "ok-org", "name": "Ok (sample)", "services": [
        {"id": "bad-1", "name": "Bad", "service_areas": [{"name": "Narnia"}],
         "attributes": [{"taxonomy_term": {"code": "idva", "taxonomy": hsds.SERVICE_TYPE_TAXONOMY}}]},
        {"id": "bad-2", "name": "No type", "service_areas": [{"name": "E08000035"}]},
    ]}]}
    with pytest.raises(hsds.HsdsImportError) as error:
        hsds.import_document(document)
    assert [e["service"] for e in error.value.errors] == ["bad-1", "bad-2"]
    first = error.value.errors[0]["errors"][0]
    assert first["loc"] == ["coverage"] and "neither an ONS area code" in first["msg"] and "input" not in first


def test_services_are_valid_fhir_healthcare_services():
    organisations, services = sample_rows()
    orgs = {o.id: o for o in organisations}
    for s in services:
        resource = fhir_view.healthcare_service(s, orgs[s.organisation_id])
        HealthcareService.model_validate(resource)
    kinara = next(s for s in services if s.id == "kinara-outreach")
    resource = fhir_view.healthcare_service(kinara, orgs["kinara-womens-network"])
    assert resource["communication"][0]["coding"][0]["system"] == "urn:ietf:bcp:47"
    assert any(c["text"] == "black-minoritised" for c in resource["characteristic"])
