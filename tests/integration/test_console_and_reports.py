"""The ops console and the reports as web pages, signed in with an ops user's (or a commissioner's) own
credential: an escalated case is read with the router's explanation, assigned by hand and noted through
the forms (CSRF-checked); the reports show "<5" for small counts on the page, in the CSV and in the API;
a commissioner sees reports and never the console."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from services.launcher import NatsServer
from services.notify.store import CaseConsent, Escalation, Offer
from shared.auth import NotifyCaller
from shared.events import CaseEscalated
from tests.harness import SERVICE_CREDENTIALS, eventually
from tests.integration.notify_world import OPS, World, world_for
from tests.servers import LocalServer, _Token

COMMISSIONER_KEY = "pw_ops_commissioner_key"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, realm: str, key: str) -> httpx.Response:
    page = await client.get(f"/{realm}/sign-in")
    return await client.post(f"/{realm}/sign-in", data={"csrf_token": csrf_of(page.text), "api_key": key})


def stub_router(decisions: dict[str, dict[str, Any]]) -> FastAPI:
    """The router's two reads the console and the reports use."""
    app = FastAPI()
    app.state.settings = type("Settings", (), {"service_credentials": _Token(SERVICE_CREDENTIALS)})()

    @app.get("/cases/{case_id}/decision")
    async def decision(case_id: str) -> dict[str, Any]:
        return decisions[case_id]

    @app.get("/internal/reports/geography")
    async def geography(_caller: NotifyCaller) -> dict[str, Any]:
        return {"names": {"E54000054": "West Yorkshire ICB (synthetic)"},
                "gaps": [{"icb": "E54000054", "community": "deaf", "availability": "regional", "survivors": 3}],
                "areas": [{"lad": "E08000033", "icb": "E54000054", "idva": False, "marac": True}]}

    return app


@pytest.fixture
async def world(nats_server: NatsServer, database_url: str, tmp_path: Path, encryption_keys: str) -> AsyncIterator[World]:
    async with world_for(nats_server.url, database_url, tmp_path, encryption_keys) as w:
        w.directory.ops_users[COMMISSIONER_KEY] = "commissioner-sam"
        w.directory.ops_roles[COMMISSIONER_KEY] = "commissioner"
        yield w


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_ops_user_reads_an_escalation_with_the_routers_explanation_assigns_it_and_notes_it(world: World):
    world.directory.services["svc-refuge"] = {
        "id": "svc-refuge", "organisation_id": "org-outreach", "name": "Refuge (synthetic)",
        "service_type": "refuge", "by_and_for": [], "organisation_by_and_for": [],
    }
    decisions: dict[str, dict[str, Any]] = {}
    router = LocalServer(stub_router(decisions))
    await router.start()
    try:
        async with world.notify(router_url=router.url) as notify:
            case_id = await world.refer(identifier="console-escalated")

            async def known() -> bool:
                async with notify.app.state.runtime.db.session() as session:
                    return await session.get(CaseConsent, case_id) is not None

            await eventually(known)
            decisions[str(case_id)] = {
                "note": "no local service matches; escalated to ops", "ranking": {"specialist": ["svc-refuge"]},
                "decisions": [{"kind": "initial", "outcome": "fallback", "created_at": "2026-11-26T10:00:00",
                               "trigger": None, "offer_to": [], "no_offer_reason": "no local service takes the case",
                               "escalation": "no local service matches", "notes": ["area: Leeds (E08000035)"],
                               "excluded": {"svc-far": "does not cover the area"}, "passed_over": {}}]}
            await world.probe.publish(CaseEscalated(case_id=case_id, reason="no local service matches"))

            async def escalated() -> UUID | None:
                async with notify.app.state.runtime.db.session() as session:
                    row = (await session.exec(select(Escalation).where(Escalation.case_id == case_id))).first()
                    return row.id if row else None

            await eventually(lambda: _truthy(escalated))
            escalation_id = await escalated()

            # Not signed in: the sign-in page, not the queue.
            assert (await notify.get("/console/escalations")).headers["location"] == "/console/sign-in"
            signed = await sign_in(notify, "console", OPS["Authorization"].removeprefix("Bearer "))
            assert signed.status_code == 303
            listing = await notify.get("/console/escalations")
            assert listing.status_code == 200 and "no local service matches" in listing.text
            assert listing.headers["cache-control"] == "no-store"
            page = await notify.get(f"/console/escalations/{escalation_id}")
            assert "no local service takes the case" in page.text and "svc-far: does not cover the area" in page.text
            assert "<title>Escalated case" in page.text and str(case_id) not in page.text.split("<body")[0]

            # A form without the page's CSRF token changes nothing.
            forged = await notify.post(f"/console/escalations/{escalation_id}/assign", data={"service_id": "svc-refuge"})
            assert forged.status_code == 403
            done = await notify.post(f"/console/escalations/{escalation_id}/assign",
                                     data={"service_id": "svc-refuge", "csrf_token": csrf_of(page.text)})
            assert done.status_code == 303
            after = await notify.get(done.headers["location"])
            assert "Offered to Refuge (synthetic)" in after.text
            noted = await notify.post(f"/console/escalations/{escalation_id}/notes",
                                      data={"text": "Called the refuge's duty line.", "csrf_token": csrf_of(after.text)})
            assert noted.status_code == 303
            assert "Called the refuge" in (await notify.get(noted.headers["location"])).text
            async with notify.app.state.runtime.db.session() as session:
                offers = (await session.exec(select(Offer).where(Offer.case_id == case_id))).all()
            assert [(o.service_id, o.assigned_by) for o in offers] == [("svc-refuge", "ops-alex")]
            # Assigning the same service again is the API's 409, shown as a page.
            again = await notify.post(f"/console/escalations/{escalation_id}/assign",
                                      data={"service_id": "svc-refuge", "csrf_token": csrf_of(after.text)})
            assert again.status_code == 409 and "already holds an open offer" in again.text
    finally:
        await router.stop()


async def _truthy(predicate) -> bool:  # type: ignore[no-untyped-def]
    return bool(await predicate())


async def test_reports_suppress_small_counts_in_pages_csv_and_api_and_commissioners_never_see_the_console(
        world: World):
    router = LocalServer(stub_router({}))
    await router.start()
    try:
        async with world.notify(router_url=router.url) as notify:
            case_id = await world.refer(identifier="reported")

            async def known() -> bool:
                async with notify.app.state.runtime.db.session() as session:
                    case = await session.get(CaseConsent, case_id)
                    return case is not None and case.referred_at is not None

            await eventually(known)
            # A commissioner cannot sign in to the console at all.
            refused = await sign_in(notify, "console", COMMISSIONER_KEY)
            assert refused.status_code == 401
            assert (await sign_in(notify, "reports", COMMISSIONER_KEY)).status_code == 303
            page = await notify.get("/reports")
            assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
            assert "&lt;5" in page.text and ">1<" not in page.text
            assert "West Yorkshire ICB (synthetic): Deaf" in page.text
            assert '<svg xmlns="http://www.w3.org/2000/svg" role="img"' in page.text
            csv = await notify.get("/reports/referrals-by-setting.csv")
            assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
            assert csv.text.splitlines()[1:] == ["gp,<5", "Total,<5"]
            # The API, for an ops user's tools: the same suppression.
            api = await notify.get("/report-tables", headers=OPS)
            assert api.status_code == 200
            tables = {t["key"]: t for t in api.json()["tables"]}
            assert tables["referrals-by-setting"]["rows"] == [["gp", ["<5"]], ["Total", ["<5"]]]
            assert (await notify.get("/report-tables/gaps.csv", headers=OPS)).text.splitlines()[1].endswith(",0,<5,0,0,<5")
            assert (await notify.get("/report-tables")).status_code == 401
    finally:
        await router.stop()


async def test_dead_letters_are_listed_without_their_bodies_and_replayed_from_the_console(world: World):
    async with world.notify() as notify:
        runtime = notify.app.state.runtime
        # A message a consumer gave up on, as the bus files it (its body is the event; never shown).
        await runtime.bus.publish_raw(
            "dlq.case.escalated", b'{"not": "shown"}', msg_id="dead-letter-test",
            headers={"Pathways-Dlq-Consumer": "notify-escalations", "Pathways-Dlq-Subject": "case.escalated",
                     "Pathways-Dlq-Error": "ValidationError", "Pathways-Dlq-Deliveries": "5"})
        assert (await sign_in(notify, "console", OPS["Authorization"].removeprefix("Bearer "))).status_code == 303
        page = await notify.get("/console/dead-letters")
        assert "notify-escalations" in page.text and "ValidationError" in page.text and "not" + '": "shown' not in page.text
        home = await notify.get("/console")
        assert ">1<" in home.text.replace(" ", "")
        replayed = await notify.post("/console/dead-letters/replay", data={"csrf_token": csrf_of(page.text)})
        assert replayed.status_code == 303
        after = await notify.get("/console/dead-letters")
        # Replayed once: it fails again (its body is no event) and comes back as a new dead letter, which
        # this replay does not pick up again and again.
        assert "Replayed 1 message(s)" in after.text
        assert '<td class="number">1</td><td>case.escalated' not in after.text
