"""The shared web base: sign-in with a credential, the session cookie's flags, CSRF on every form,
the idle timeout, revocation ending a session, no-store, HTML error pages, the quick exit."""

import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from shared.auth import Caller, CallerKind
from shared.service import get_session
from shared.settings import Environment, ServiceSettings
from shared.web.pages import mount_assets
from shared.web.realm import WebRealm
from shared.web.session import WebSession, generate_session_key

KEYS = {"pw_key_a": "org-a"}


async def verify(request: Request, key: str, session: object) -> Caller | None:
    return Caller(CallerKind.provider, KEYS[key]) if key in KEYS else None


def make_app(environment: Environment) -> tuple[FastAPI, WebRealm]:
    app = FastAPI()
    app.state.settings = ServiceSettings(environment=environment, web_session_keys=generate_session_key(),
                                         web_exit_url="https://neutral.example/")
    app.dependency_overrides[get_session] = lambda: None
    realm = WebRealm(name="test", title="Test inbox", prefix="/t", verify=verify)
    router = realm.router()

    @router.get("")
    async def home(request: Request, caller: Annotated[Caller, Depends(realm.signed_in)]) -> Response:
        return realm.pages.render(request, "error.html", {"status": 200, "title": "Home", "detail": caller.id})

    @router.post("/act")
    async def act(request: Request, caller: Annotated[Caller, Depends(realm.signed_in)]) -> Response:
        realm.flash(request, "Done.")
        return realm.redirect("/t")

    app.include_router(router)
    mount_assets(app)
    return app, realm


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app, _ = make_app(Environment.development)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


async def signed_in(client: httpx.AsyncClient) -> str:
    page = await client.get("/t/sign-in")
    done = await client.post("/t/sign-in", data={"csrf_token": csrf_of(page.text), "api_key": "pw_key_a"})
    assert done.status_code == 303 and done.headers["location"] == "/t"
    home = await client.get("/t")
    assert home.status_code == 200 and "org-a" in home.text and "You are signed in." in home.text
    return csrf_of(home.text)


async def test_sign_in_sets_a_strict_httponly_cookie_and_pages_are_not_stored(client: httpx.AsyncClient):
    page = await client.get("/t/sign-in")
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # development only: plain http on the loopback
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<label for="api_key">' in page.text
    await signed_in(client)


async def test_the_cookie_is_secure_outside_development():
    app, _ = make_app(Environment.production)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as c:
        page = await c.get("/t/sign-in")
        cookie = page.headers["set-cookie"].lower()
        assert cookie.startswith("__host-pathways-test=") and "; secure" in cookie and "samesite=strict" in cookie


async def test_no_session_redirects_to_sign_in(client: httpx.AsyncClient):
    response = await client.get("/t")
    assert response.status_code == 303 and response.headers["location"] == "/t/sign-in"


async def test_a_wrong_key_is_refused_and_nothing_signs_in(client: httpx.AsyncClient):
    page = await client.get("/t/sign-in")
    refused = await client.post("/t/sign-in", data={"csrf_token": csrf_of(page.text), "api_key": "pw_wrong"})
    assert refused.status_code == 401 and "was not recognised" in refused.text
    assert (await client.get("/t")).status_code == 303


async def test_every_form_needs_the_sessions_csrf_token(client: httpx.AsyncClient):
    page = await client.get("/t/sign-in")
    assert (await client.post("/t/sign-in", data={"api_key": "pw_key_a"})).status_code == 403
    assert (await client.post("/t/sign-in", data={"csrf_token": "forged", "api_key": "pw_key_a"})).status_code == 403
    csrf = await signed_in(client)
    forged = await client.post("/t/act", data={"csrf_token": csrf_of(page.text)})  # the pre-sign-in token
    assert forged.status_code == 403 and "text/html" in forged.headers["content-type"]
    assert (await client.post("/t/act", data={})).status_code == 403
    done = await client.post("/t/act", data={"csrf_token": csrf})
    assert done.status_code == 303
    assert "Done." in (await client.get("/t")).text


async def test_revoking_the_credential_ends_the_session(client: httpx.AsyncClient):
    await signed_in(client)
    KEYS.pop("pw_key_a")
    try:
        response = await client.get("/t")
        assert response.status_code == 303 and response.headers["location"] == "/t/sign-in"
        assert "no longer valid" in (await client.get("/t/sign-in")).text
    finally:
        KEYS["pw_key_a"] = "org-a"


async def test_an_idle_session_ends():
    app, realm = make_app(Environment.development)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        await signed_in(c)
        codec = app.state.web_codecs["test"][0]
        idle = codec.idle_seconds + 1
        stale = codec.fernet.encrypt_at_time(WebSession(key="pw_key_a").to_json(), int(time.time()) - idle).decode()
        c.cookies.clear()
        response = await c.get("/t", headers={"cookie": f"pathways-test={stale}"})
        assert response.status_code == 303
        assert "Your session ended" in (await c.get("/t/sign-in")).text


async def test_sign_out_and_quick_exit_end_the_session(client: httpx.AsyncClient):
    csrf = await signed_in(client)
    assert (await client.post("/t/sign-out", data={"csrf_token": csrf})).status_code == 303
    assert (await client.get("/t")).status_code == 303
    await signed_in(client)
    leaving = await client.get("/t/exit")
    assert leaving.status_code == 303 and leaving.headers["location"] == "https://neutral.example/"
    assert "cookies" in leaving.headers["clear-site-data"]
    assert (await client.get("/t")).status_code == 303


async def test_assets_are_bundled(client: httpx.AsyncClient):
    assert (await client.get("/assets/pathways.css")).status_code == 200
    script = await client.get("/assets/quick-exit.js")
    assert script.status_code == 200 and "location.replace" in script.text


async def test_production_without_session_keys_refuses_to_sign_in_rather_than_guess():
    app, _ = make_app(Environment.production)
    app.state.settings = ServiceSettings(environment=Environment.production)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as c:
        page = await c.get("/t/sign-in")
        assert page.status_code == 503 and "PATHWAYS_WEB_SESSION_KEYS" in page.text


async def test_signed_in_pages_leave_the_screen_when_the_session_would_end(client: httpx.AsyncClient):
    await signed_in(client)
    home = await client.get("/t")
    assert 'data-idle-seconds="900"' in home.text and 'data-idle-url="/t/sign-in"' in home.text
    assert "/assets/idle.js" in home.text
    assert "data-idle-seconds" not in (await client.get("/t/sign-in")).text


def test_times_read_in_uk_time():
    from datetime import UTC, datetime

    from shared.web.pages import uk_time

    assert uk_time(datetime(2026, 7, 1, 13, 5, tzinfo=UTC)) == "Wed 1 Jul 2026, 14:05"  # BST
    assert uk_time(datetime(2026, 12, 1, 13, 5, tzinfo=UTC)) == "Tue 1 Dec 2026, 13:05"  # GMT
