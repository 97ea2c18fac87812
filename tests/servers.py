"""Real local HTTP servers for tests: an app served by uvicorn on a loopback port (so services call it
over real HTTP), a stub directory, and a provider's webhook receiver that verifies Standard Webhooks
signatures with the ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.launcher import free_port
from shared.auth import ServiceCaller
from shared.ops_users import AUTHENTICATE_PATH


class LocalServer:
    """An ASGI app on 127.0.0.1:<port>; can be stopped and started again on the same port (an outage)."""

    def __init__(self, app: Any, port: int | None = None, *, lifespan: str = "off") -> None:
        self.app = app
        self.port = port or free_port()
        self.lifespan = lifespan
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # No log_config or log_level: a test server must not reconfigure the process's logging (uvicorn's
        # would stop its loggers reaching the root handler, or raise their level, for the tests that read logs).
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan=self.lifespan,
                                log_level=None, access_log=False, log_config=None)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = self._task = None


@contextlib.asynccontextmanager
async def serving(app: Any, port: int | None = None, *, lifespan: str = "off") -> AsyncIterator[LocalServer]:
    server = LocalServer(app, port, lifespan=lifespan)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class StubDirectory:
    """The directory's internal contract, as notify uses it: provider keys, delivery settings, services."""

    service_credentials: str  # PATHWAYS_SERVICE_CREDENTIALS: which services may call it
    providers: dict[str, str] = field(default_factory=dict)  # api key → organisation id
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    ops_users: dict[str, str] = field(default_factory=dict)  # api key → ops user id
    ops_roles: dict[str, str] = field(default_factory=dict)  # api key → role, when not "ops" (a commissioner)

    def app(self) -> FastAPI:
        app = FastAPI()
        # shared.auth.require_service reads the accepted credentials from app.state.settings.
        app.state.settings = type("Settings", (), {"service_credentials": _Token(self.service_credentials)})()

        @app.post("/internal/providers/authenticate")
        async def authenticate(body: dict[str, str], _caller: ServiceCaller) -> dict[str, str]:
            organisation_id = self.providers.get(body["api_key"])
            if organisation_id is None:
                raise HTTPException(404)
            return {"organisation_id": organisation_id, "name": organisation_id}

        @app.post(AUTHENTICATE_PATH)
        async def authenticate_ops(body: dict[str, str], _caller: ServiceCaller) -> dict[str, str]:
            ops_user_id = self.ops_users.get(body["api_key"])
            if ops_user_id is None:
                raise HTTPException(404)
            return {"ops_user_id": ops_user_id, "name": ops_user_id,
                    "role": self.ops_roles.get(body["api_key"], "ops")}

        @app.get("/internal/organisations/{organisation_id}/delivery")
        async def delivery(organisation_id: str, _caller: ServiceCaller) -> dict[str, Any]:
            if organisation_id not in self.deliveries:
                raise HTTPException(404)
            return {"organisation_id": organisation_id, **self.deliveries[organisation_id]}

        @app.get("/services/{service_id}")
        async def service(service_id: str) -> dict[str, Any]:
            if service_id not in self.services:
                raise HTTPException(404)
            return self.services[service_id]

        return app


class _Token:
    def __init__(self, token: str) -> None:
        self._token = token

    def get_secret_value(self) -> str:
        return self._token


class WebhookReceiver:
    """A provider's endpoint: records every request, and whether its signature verified."""

    def __init__(self, secret: str) -> None:
        self.verifier = Webhook(secret)
        self.received: list[dict[str, Any]] = []
        self.rejected = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks")
        async def hook(request: Request) -> Response:
            body = await request.body()
            try:
                payload = self.verifier.verify(body, dict(request.headers))
            except WebhookVerificationError:
                self.rejected += 1
                return Response(status_code=400)
            self.received.append({"id": request.headers["webhook-id"], "payload": payload, "raw": body})
            return Response(status_code=204)

        return app

    def ids(self) -> list[str]:
        return [r["id"] for r in self.received]

    def types(self) -> list[str]:
        return [r["payload"]["type"] for r in self.received]

    def raw(self) -> str:
        return "".join(json.dumps(r["payload"]) for r in self.received)


class ThreadedServer:
    """An ASGI app served by uvicorn in a thread of its own, for synchronous end-to-end tests."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_level=None,
                                access_log=False, log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"test-server-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"test server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str
    attributes: dict[str, Any]


class OtlpReceiver:
    """A minimal OTLP/HTTP trace collector: decodes what the services' exporters send and keeps it."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        # Every export request as it arrived: all a span carries (names, attributes, events, status).
        self.raw: list[bytes] = []
        self._lock = threading.Lock()

    def app(self) -> FastAPI:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )
        from opentelemetry.proto.trace.v1.trace_pb2 import Span

        app = FastAPI()

        @app.post("/v1/traces")
        async def traces(request: Request) -> Response:
            export = ExportTraceServiceRequest()
            body = await request.body()
            export.ParseFromString(body)
            received = []
            for resource_spans in export.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        received.append(ReceivedSpan(
                            service=resource["service.name"], name=span.name, trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex() or None,
                            kind=Span.SpanKind.Name(span.kind),
                            attributes={a.key: _any_value(a.value) for a in span.attributes},
                        ))
            with self._lock:
                self.spans.extend(received)
                self.raw.append(body)
            return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

        return app

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None
