"""The app factory every service is built with: same lifespan, same probes, same error format.

Lifespan: open the database (migrate the service's tables to the code's revision), start the bus in the background (a
service starts and answers even while NATS is away), start the outbox relay, run the service's own
``setup`` (consumers, caches, seeding), and undo all of it in reverse on shutdown.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry.trace import Span, use_span
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared import metrics, protection
from shared.admission import Admission, AdmissionMiddleware
from shared.bus import DLQ_STREAM, Bus, ConsumerSpec, Delivery, Received
from shared.db import Database
from shared.events import Event
from shared.logs import configure_logging
from shared.methods import AllowHeader
from shared.migrations import ServiceMigrations, upgrade
from shared.openapi import install_openapi
from shared.outbox import OutboxRelay, outbox_depth
from shared.problems import busy_problem, install_problem_handlers, problem
from shared.settings import ServiceSettings
from shared.telemetry import app_telemetry, configure_tracing, flush_spans, instrument_client

log = logging.getLogger(__name__)

Work = Callable[[AsyncSession, Event, Delivery], Awaitable[None]]
Work1 = Callable[[AsyncSession], Awaitable[None]]
# Work outside the transaction for one event (a network read), returning the work to do inside it.
Prepare = Callable[[Event, Delivery], Awaitable[Work1]]


@dataclass
class Runtime:
    """What a running service has: settings, its database, the bus, an HTTP client for internal calls."""

    settings: ServiceSettings
    db: Database
    bus: Bus
    relay: OutboxRelay
    http: httpx.AsyncClient
    stop_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Read when /metrics is scraped: gauges of state that lives in the database or in JetStream.
    metric_refreshers: list[metrics.Refresh] = field(default_factory=list)

    def consume(self, durable: str, subjects: Sequence[str], work: Work, **options: object) -> ConsumerSpec:
        """A durable consumer whose ``work`` runs once per event, in one transaction with the inbox
        record and any outbox events it enqueues; the message is acked after that commit.

        Events fetched together are handled in one transaction (``Database.run_batch``; a failing event
        is then retried alone), so a backlog costs one commit per batch rather than one per event (issue 9)."""

        async def prepare(event: Event, delivery: Delivery) -> Work1:
            return lambda session: work(session, event, delivery)

        return self.consume_prepared(durable, subjects, prepare, **options)

    def consume_prepared(self, durable: str, subjects: Sequence[str], prepare: Prepare,
                         **options: object) -> ConsumerSpec:
        """``consume`` for handlers with work to do outside the transaction first (a network read):
        ``prepare`` does it, per event, and returns the work to run in the batch's transaction. An
        error from ``prepare`` fails that event alone."""

        async def one(event: Event, delivery: Delivery) -> None:
            work = await prepare(event, delivery)
            await self.db.run_once(durable, event.event_id, work)

        async def batch(received: Sequence[Received]) -> list[BaseException | None]:
            outcomes: list[BaseException | None] = [None] * len(received)
            # One span per event, current while its work is prepared and while it runs (the work may
            # run twice: in the batch, then alone when another event of the batch failed).
            spans = [item.start_span() for item in received]
            works: list[tuple[int, Received, Work1]] = []
            try:
                for index, item in enumerate(received):
                    try:
                        with _current(spans[index]):
                            works.append((index, item, await prepare(item.event, item.delivery)))
                    except Exception as exc:  # noqa: BLE001 - this event alone is retried
                        outcomes[index] = exc

                def traced(span: Span, work: Work1) -> Work1:
                    async def run(session: AsyncSession) -> None:
                        with _current(span):
                            await work(session)
                    return run

                results = await self.db.run_batch(
                    durable, [(item.event.event_id, traced(spans[index], work)) for index, item, work in works]
                )
                for (index, _, _), result in zip(works, results, strict=True):
                    outcomes[index] = result
                return outcomes
            finally:
                for span in spans:
                    span.end()

        options.setdefault("max_deliver", self.settings.max_deliver)
        return self.bus.consume(durable, subjects, one, batch_handler=batch, **options)  # type: ignore[arg-type]


@contextmanager
def _current(span: Span) -> Iterator[None]:
    """``span`` current for a block; a failure is recorded by its type only (its message could quote data)."""
    with use_span(span, end_on_exit=False, record_exception=False):
        try:
            yield
        except Exception as exc:
            span.record_exception(exc, attributes={"exception.message": type(exc).__name__})
            raise


class Readiness(BaseModel):
    status: str
    service: str
    checks: dict[str, bool]


def standard_metric_refreshers(runtime: Runtime) -> list[metrics.Refresh]:
    """The gauges every service exports: its outbox depth, its consumers' lag, the dead letters."""
    name = runtime.settings.service_name

    async def outbox() -> None:
        metrics.OUTBOX_DEPTH.labels(name).set(await outbox_depth(runtime.db))

    async def consumers() -> None:
        if runtime.bus.ready:
            metrics.set_consumer_lag(await runtime.bus.consumer_lag())

    async def dead_letters() -> None:
        if runtime.bus.ready:
            metrics.DEAD_LETTER_DEPTH.set(await runtime.bus.stream_depth(DLQ_STREAM))

    return [outbox, consumers, dead_letters]


# Young objects between two collections of the youngest generation. CPython's 700 is below what 16 requests
# in flight hold at once (a referral Bundle is ~700 model objects and dicts by itself), so under load it
# collected about every other request and promoted live request objects into older generations, to be
# walked again there. At 20,000 a collection comes when garbage has really piled up (a few MB at most).
GC_YOUNG_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """Once startup is done: move everything alive then (modules, models, compiled validators and
    statements: some 200,000 objects, alive as long as the process) out of the cyclic collector's sight,
    and collect the young generation less often. Measured on intake's request path (16 in flight): the
    collector's time went from ~0.4-0.55 ms a request (~14 % of its CPU) to ~0.2 with the freeze alone
    and to ~0 with both (bench/RESULTS.md, session 9). Memory is bounded as before: objects freed by
    reference counting never wait for the collector, and cycles are collected at the threshold."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def create_service_app(
    *,
    settings: ServiceSettings,
    title: str,
    description: str,
    migrations: ServiceMigrations,
    routers: Sequence[APIRouter],
    setup: Callable[[Runtime], Awaitable[None]] | None = None,
    fhir_prefix: str | None = None,
) -> FastAPI:
    name = settings.service_name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_tracing(name, settings.otel_exporter)
        db = migrations.database(settings.resolved_database_url(), wait_timeout=settings.database_wait_seconds)
        await upgrade(db, migrations)
        bus = Bus(settings.nats_url.get_secret_value(), name=f"pathways-{name}", stream_replicas=settings.nats_stream_replicas,
                  tls_ca_file=settings.nats_ca_file or None, limits=settings.stream_limits())
        relay = OutboxRelay(db, bus)
        http = httpx.AsyncClient(timeout=10.0)
        instrument_client(http)
        runtime = Runtime(settings, db, bus, relay, http)
        runtime.metric_refreshers.extend(standard_metric_refreshers(runtime))
        app.state.runtime = runtime
        app.state.metric_refreshers = runtime.metric_refreshers
        app.state.settings = settings
        app.state.admission = Admission(settings.max_concurrent_requests, settings.request_queue_seconds)
        await bus.start()
        relay.start()
        if any(table.name == "audit_record" for table in db.tables):
            from shared.audit_chain import chain_state, start_sealer

            runtime.stop_hooks.append(start_sealer(db, settings).stop)

            async def audit_chain() -> None:
                age, seq = await chain_state(db)
                metrics.AUDIT_UNSEALED_AGE.labels(name).set(age)
                metrics.AUDIT_CHAIN_SEQ.labels(name).set(seq)

            runtime.metric_refreshers.append(audit_chain)
        if setup is not None:
            await setup(runtime)
        if getattr(app.state, "owns_process", False):
            tune_garbage_collector()  # a process of its own (run_service), not an app in a test's process
        log.info("%s started", name)
        try:
            yield
        finally:
            for hook in reversed(runtime.stop_hooks):
                await hook()
            await relay.stop()
            await bus.close()
            await http.aclose()
            await db.dispose()
            flush_spans()

    # Swagger UI and ReDoc in development only (issue 13): production serves the document, not a console.
    # /openapi.json stays, for integrators and the contract tests.
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan,
                  docs_url="/docs" if settings.is_development else None,
                  redoc_url="/redoc" if settings.is_development else None, telemetry=app_telemetry())
    app.add_middleware(AdmissionMiddleware)
    app.state.busy_response = busy_problem
    install_problem_handlers(app)
    install_openapi(app, fhir_prefix=fhir_prefix)
    app.add_middleware(AllowHeader, document=app.openapi)
    protection.install(app, settings)
    app.add_middleware(metrics.HttpRequests, service=name)
    app.add_api_route("/metrics", metrics.metrics_endpoint, methods=["GET"], tags=["probes"],
                      summary="Prometheus metrics", include_in_schema=True, response_class=PlainTextResponse,
                      responses={200: {"description": "Prometheus text exposition format",
                                       "content": {"text/plain": {"schema": {"type": "string"}}}}})

    @app.get("/healthz", tags=["probes"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.get("/readyz", tags=["probes"], summary="The bus and the database are reachable",
             response_model=Readiness)
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        checks = {"database": await runtime.db.ping(), "bus": runtime.bus.ready}
        if all(checks.values()):
            return JSONResponse({"status": "ready", "service": name, "checks": checks})
        return problem(503, "Not ready: " + ", ".join(k for k, ok in checks.items() if not ok), checks=checks)

    for router in routers:
        app.include_router(router)
    return app


async def get_runtime(request: Request) -> Runtime:
    # Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def`` one on a
    # worker thread, a thread hop (and a GIL hand-over) per request for nothing (issue 9's profile).
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one database session, shared by the dependency that authenticates the caller and
    the handler (FastAPI resolves it once per request). It holds a connection only while it reads or
    writes: writes go through ``runtime.db.transaction(session)``, which ends any open read first.
    (The runtime from the request itself, not ``RuntimeDep``: each sub-dependency costs FastAPI a solve.)"""
    runtime: Runtime = request.app.state.runtime
    async with runtime.db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def run_service(create_app: Callable[[], FastAPI], settings: ServiceSettings) -> None:
    """Serve one service with uvicorn on its configured host and port (``python -m services.X``)."""
    import sys

    import uvicorn

    configure_logging(settings.service_name)
    # The database drivers (aiosqlite above all) run each statement on a thread and hand the result back
    # to the event loop: while the loop is busy (parsing a Bundle), that thread waits for the GIL for
    # up to the switch interval, 5 ms by default, per statement. A transaction holds SQLite's one writer
    # slot across several statements, so those waits queue every other writer (issue 9: 1 ms measured
    # about 1.7 times the referrals per second of 5 ms under load).
    sys.setswitchinterval(0.001)
    # uvicorn's access log would print raw paths (``/areas/<postcode>``): ``metrics.HttpRequests`` logs
    # each request by its route template instead.
    app = create_app()
    app.state.owns_process = True
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", lifespan="on",
                log_config=None, access_log=False)
