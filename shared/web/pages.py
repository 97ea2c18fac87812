"""Rendering: one Jinja2 environment over the base templates and each service's own, bundled assets.

Pages are server-rendered HTML with no external assets (the stylesheet and scripts are files in this
package, served by ``mount_assets``), no inline scripts or styles (the security headers allow
``'self'`` only), and ``Cache-Control: no-store`` on everything a signed-in person sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

HERE = Path(__file__).parent
ASSETS_PATH = "/assets"
NO_STORE = "no-store"
# People in England read times in their own clock (GMT or BST), not UTC.
UK = ZoneInfo("Europe/London")


def uk_time(value: datetime | None) -> str:
    """``{{ offer.respond_by | when }}``: "Tue 1 Dec 2026, 14:05" in UK time."""
    if value is None:
        return ""
    local = value.astimezone(UK)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"


def no_store(response: Response) -> Response:
    """Never kept by the browser or a proxy: pages with a handoff (and every signed-in page) use it."""
    response.headers["Cache-Control"] = NO_STORE
    response.headers["Pragma"] = "no-cache"
    return response


class Pages:
    """The templates of one service's web pages: its own folder first, then the shared base."""

    def __init__(self, template_dirs: Sequence[Path] = ()) -> None:
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader([*map(str, template_dirs), str(HERE / "templates")])]),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["assets"] = ASSETS_PATH
        self.env.filters["when"] = uk_time

    def render(self, request: Request, template: str, context: dict[str, Any] | None = None, *,
               status_code: int = 200) -> HTMLResponse:
        """The page, with what every layout needs (the realm, the CSRF token, a flash message)."""
        web = getattr(request.state, "web", None)
        values = {
            "request": request,
            "realm": web.realm if web else None,
            "caller": web.caller if web else None,
            "csrf_token": web.session.csrf if web and web.session else "",
            "flash": web.take_flash() if web else None,
            # Signed-in pages leave the screen for the sign-in page when the session would have ended.
            "idle_seconds": web.realm.idle_seconds(request) if web and web.caller else None,
            **(context or {}),
        }
        html = self.env.get_template(template).render(values)
        return HTMLResponse(html, status_code=status_code)

    def render_plain(self, template: str, context: dict[str, Any], *, status_code: int) -> HTMLResponse:
        """A page rendered outside a route (no request, nobody signed in): refusals before the route."""
        values = {"request": None, "realm": None, "caller": None, "csrf_token": "", "flash": None,
                  "idle_seconds": None, **context}
        return no_store(HTMLResponse(self.env.get_template(template).render(values), status_code=status_code))


def refuse_in_html(app: FastAPI, prefix: str) -> None:
    """Requests refused before they reach a route (rate limits, body size: ``shared.protection``) under
    ``prefix`` get an HTML page, not problem+json: a person is reading. Other paths keep the app's refusal."""
    other = app.state.refusal

    def refusal(path: str, status: int, detail: str, headers: dict[str, str]) -> Response:
        if path != prefix and not path.startswith(prefix + "/"):
            return other(path, status, detail, headers)  # type: ignore[no-any-return]
        title = "Too many attempts" if status == 429 else "That cannot be done now"
        response = BASE_PAGES.render_plain("error.html", {"status": status, "title": title, "detail": detail},
                                           status_code=status)
        response.headers.update(headers)
        return response

    app.state.refusal = refusal


def mount_assets(app: FastAPI) -> None:
    """Serve the bundled stylesheet and scripts at ``/assets`` (once per app)."""
    if not any(getattr(route, "path", None) == ASSETS_PATH for route in app.routes):
        app.mount(ASSETS_PATH, StaticFiles(directory=HERE / "static"), name="assets")


BASE_PAGES = Pages()
