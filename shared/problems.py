"""RFC 9457 problem+json for every non-FHIR API error."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from shared.state_machine import IllegalTransition

PROBLEM_JSON = "application/problem+json"


def problem(status: int, detail: str, *, title: str | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def busy_problem(path: str, retry_after: int) -> JSONResponse:
    """Saturated (no request slot or database connection within the wait limit): nothing was done."""
    response = problem(503, "The service is busy; nothing was changed. Retry after the time given.")
    response.headers["Retry-After"] = str(retry_after)
    return response


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without echoing the submitted values (they may be identifying)."""
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def install_problem_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        response = problem(exc.status_code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "The request does not match the API's schema.", errors=validation_errors(exc))

    async def busy(request: Request, exc: Exception) -> JSONResponse:
        return request.app.state.busy_response(  # type: ignore[no-any-return]
            request.url.path, request.app.state.settings.busy_retry_after_seconds)

    async def illegal_transition(request: Request, exc: IllegalTransition) -> JSONResponse:
        return problem(409, str(exc), title="Conflict with the current state", state=exc.current)

    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeout, busy)
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(IllegalTransition, illegal_transition)  # type: ignore[arg-type]
