"""Signing in to a set of web pages (a "realm": the provider inbox, the ops console, the reports).

A realm is generic over one thing: how to turn a presented key into a ``Caller`` (the same verifier
the API uses, so the same credentials, the same expiry and the same revocation apply). It gives:

- ``realm.router()``: an ``APIRouter`` under the realm's prefix with the sign-in page, sign-out and the
  quick exit, whose routes render errors as HTML pages (401 → the sign-in page) and mark every
  response ``Cache-Control: no-store``;
- ``realm.signed_in``: the dependency for every other page; it re-verifies the session's credential
  on every request and, for a POST, checks the CSRF token from the form (``csrf_token``).

Forms post back and redirect (POST-redirect-GET), so history holds only GET pages whose URLs carry
opaque ids, and page titles name what kind of page it is, never whose case.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Caller
from shared.service import SessionDep
from shared.settings import ServiceSettings
from shared.state_machine import IllegalTransition
from shared.web.pages import BASE_PAGES, Pages, no_store
from shared.web.session import CSRF_FIELD, CookiePolicy, SessionCodec, WebSession

Verifier = Callable[[Request, str, AsyncSession], Awaitable[Caller | None]]
ERROR_TITLES = {400: "Check what you entered", 403: "Not allowed", 404: "Page not found",
                409: "That cannot be done now", 410: "No longer available", 422: "Check what you entered",
                429: "Too many attempts",
                503: "Try again shortly"}


class SignInRequired(Exception):
    """No usable session: the route answers with a redirect to the realm's sign-in page."""


@dataclass
class WebState:
    """``request.state.web``: the realm, the session read from the cookie, and who is signed in."""

    realm: WebRealm
    session: WebSession | None = None
    caller: Caller | None = None
    had_cookie: bool = False
    write: bool = False
    clear: bool = False

    def take_flash(self) -> str | None:
        if self.session is None or self.session.flash is None:
            return None
        message, self.session.flash = self.session.flash, None
        self.write = True
        return message


@dataclass(eq=False)
class WebRealm:
    """One signed-in area of the web pages (see the module docstring)."""

    name: str
    title: str
    prefix: str
    verify: Verifier
    pages: Pages = field(default=BASE_PAGES)
    credential_label: str = "API key"
    credential_hint: str = ""
    home: str = ""

    def __post_init__(self) -> None:
        self.home = self.home or self.prefix

    @property
    def sign_in_path(self) -> str:
        return f"{self.prefix}/sign-in"

    # --- sessions -----------------------------------------------------------------------------------

    def _codec(self, request: Request) -> tuple[SessionCodec, CookiePolicy]:
        state = request.app.state
        cached = getattr(state, "web_codecs", None)
        if cached is None:
            cached = state.web_codecs = {}
        if self.name not in cached:
            settings: ServiceSettings = state.settings
            idle = settings.web_idle_minutes * 60
            codec = SessionCodec(settings.web_session_keys.get_secret_value(), idle_seconds=idle,
                                 max_age_seconds=settings.web_max_session_hours * 3600)
            cached[self.name] = (codec, CookiePolicy(f"pathways-{self.name}", secure=not settings.is_development))
        return cached[self.name]  # type: ignore[no-any-return]

    def _load(self, request: Request) -> WebState:
        web: WebState = request.state.web
        settings: ServiceSettings = request.app.state.settings
        if not settings.is_development and not settings.web_session_keys.get_secret_value():
            # Each replica would make up its own key and refuse the others' sessions: say so instead.
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                detail="Web sign-in is not configured here (PATHWAYS_WEB_SESSION_KEYS).")
        codec, policy = self._codec(request)
        raw = policy.read(request)
        web.had_cookie = raw is not None
        web.session = codec.decode(raw)
        return web

    async def _check_csrf(self, request: Request, session: WebSession | None) -> None:
        form = await request.form()
        presented = form.get(CSRF_FIELD)
        if session is None or not isinstance(presented, str) or not hmac.compare_digest(
                presented.encode(), session.csrf.encode()):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail="This form has expired or did not come from this site. "
                                       "Go back, reload the page and try again.")

    async def signed_in(self, request: Request, db: SessionDep) -> Caller:
        """The signed-in caller (dependency). A POST must carry the session's CSRF token."""
        web = self._load(request)
        if web.session is None or web.session.key is None:
            raise SignInRequired("Your session ended: sign in again." if web.had_cookie else "")
        caller = await self.verify(request, web.session.key, db)
        if caller is None:
            raise SignInRequired("Your credential is no longer valid (expired, rotated or revoked): "
                                 "sign in with a current one.")
        if request.method == "POST":
            await self._check_csrf(request, web.session)
        web.caller = caller
        web.write = True  # a fresh timestamp: only idleness ends a session
        return caller

    def flash(self, request: Request, message: str) -> None:
        """A one-line confirmation shown on the next page (after a POST-redirect-GET)."""
        web: WebState = request.state.web
        if web.session is not None:
            web.session.flash = message
            web.write = True

    def finish(self, request: Request, response: Response) -> Response:
        """Every realm response: not stored, no referrer sent on, and the session cookie renewed or cleared."""
        web: WebState = request.state.web
        no_store(response)
        response.headers["Referrer-Policy"] = "no-referrer"
        codec, policy = self._codec(request)
        if web.clear:
            policy.clear(response)
        elif web.write and web.session is not None:
            policy.write(response, codec.encode(web.session), max_age=codec.idle_seconds)
        return response

    # --- pages --------------------------------------------------------------------------------------

    def idle_seconds(self, request: Request) -> int:
        return self._codec(request)[0].idle_seconds

    def error_page(self, request: Request, code: int, detail: str) -> Response:
        return self.pages.render(request, "error.html", {
            "status": code, "title": ERROR_TITLES.get(code, "Something went wrong"), "detail": detail,
        }, status_code=code)

    def redirect(self, path: str) -> RedirectResponse:
        """After a POST: see the result with a GET (nothing re-posts on Back or reload)."""
        return RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER)

    def route_class(self) -> type[APIRoute]:
        realm = self

        class WebRoute(APIRoute):
            def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
                handle = super().get_route_handler()

                async def handler(request: Request) -> Response:
                    request.state.web = WebState(realm)
                    try:
                        response = await handle(request)
                    except SignInRequired as exc:
                        # A fresh anonymous session: no credential carries over, only the reason.
                        web = request.state.web
                        web.session, web.write, web.clear = WebSession(flash=str(exc) or None), True, False
                        response = realm.redirect(realm.sign_in_path)
                    except HTTPException as exc:
                        response = realm.error_page(request, exc.status_code, str(exc.detail))
                    except IllegalTransition as exc:
                        response = realm.error_page(request, 409, str(exc))
                    except RequestValidationError:
                        if request.method == "GET":  # a mistyped or made-up address (an id that is no id)
                            response = realm.error_page(request, 404, "There is no page at this address.")
                        else:
                            response = realm.error_page(request, 422, "Some of what was sent is missing or not "
                                                                      "one of the choices offered. Nothing was changed.")
                    return realm.finish(request, response)

                return handler

        return WebRoute

    def router(self) -> APIRouter:
        """The realm's router, with sign-in, sign-out and quick exit already on it."""
        router = APIRouter(prefix=self.prefix, route_class=self.route_class(), include_in_schema=False)
        realm = self

        @router.get("/sign-in")
        async def sign_in_page(request: Request) -> Response:
            web = realm._load(request)
            if web.session is None:
                web.session = WebSession()
            web.session.key = None
            web.write = True
            return realm.pages.render(request, "sign_in.html", {"error": None})

        @router.post("/sign-in")
        async def sign_in(request: Request, db: SessionDep,
                          api_key: Annotated[str, Form(max_length=500)] = "") -> Response:
            web = realm._load(request)
            await realm._check_csrf(request, web.session)
            caller = await realm.verify(request, api_key.strip(), db) if api_key.strip() else None
            if caller is None:
                # A 401: shared.protection counts it against the address ("failed-auth"), as for the API.
                return realm.pages.render(request, "sign_in.html", {
                    "error": f"That {realm.credential_label} was not recognised, or it is expired or revoked.",
                }, status_code=status.HTTP_401_UNAUTHORIZED)
            # A new session (and CSRF token) at sign-in: nothing from before carries over.
            web.session = WebSession(key=api_key.strip(), flash="You are signed in.")
            web.write = True
            return realm.redirect(realm.home)

        @router.post("/sign-out")
        async def sign_out(request: Request) -> Response:
            web = realm._load(request)
            await realm._check_csrf(request, web.session)
            web.session = WebSession(flash="You are signed out.")
            web.write = True
            return realm.redirect(realm.sign_in_path)

        @router.get("/exit")
        async def quick_exit(request: Request) -> Response:
            """Quick exit: ends the session and goes to a neutral site (the page script uses
            ``location.replace``, so this page does not stay in history)."""
            web = realm._load(request)
            web.clear = True
            response = RedirectResponse(request.app.state.settings.web_exit_url, status_code=status.HTTP_303_SEE_OTHER)
            response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
            return response

        return router

