"""OpenTelemetry set-up and W3C trace-context propagation over NATS headers.

Span attributes carry identifiers that mean nothing outside Pathways (case ids, event ids, subjects)
and never identifying data. Two guards make sure of it: ``safe_attributes`` for the spans Pathways
makes itself, and ``AllowListExporter`` for everything that leaves the process, because FastAPI's
and httpx's instrumentations record raw paths and URLs (``/areas/LS7 9ZZ`` holds a full postcode).

Export follows the standard OpenTelemetry variables: OTLP over HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, nothing otherwise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

from fastapi.telemetry import TelemetryConfig
from httpx import AsyncClient
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Link, Status

from shared import jsontext
from shared.admission import PROBE_PATHS
from shared.scrub import scrub

ALLOWED_ATTRIBUTES = frozenset(
    {"pathways.case_id", "pathways.event_id", "pathways.offer_id", "pathways.outcome", "pathways.delivery",
     "messaging.destination.name", "messaging.system", "messaging.consumer.group.name",
     # What the HTTP instrumentations record that holds no data: the route template, never the path.
     "http.route", "http.method", "http.request.method", "http.status_code", "http.response.status_code",
     "http.scheme", "url.scheme", "http.flavor", "network.protocol.version", "server.port", "net.host.port",
     "exception.type"}
)

_provider: TracerProvider | None = None


class AllowListExporter(SpanExporter):
    """Passes spans on with only allow-listed attributes (on the span, its events and its links)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([_allowed_only(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _keep(attributes: Mapping[str, object] | None) -> dict[str, object]:
    return {k: v for k, v in (attributes or {}).items() if k in ALLOWED_ATTRIBUTES}


def _status(status: Status) -> Status:
    """A failed span's status keeps its exception's type: the message after it could quote data."""
    if not status.description:
        return status
    return Status(status.status_code, scrub(status.description.split(":", 1)[0]))


def _allowed_only(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        # Route templates and fixed names; scrubbed all the same (an unmatched route could name a path).
        name=scrub(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_keep(span.attributes),  # type: ignore[arg-type]
        # An exception event keeps its type: its message and stack trace could quote data.
        events=[Event(scrub(e.name), _keep(e.attributes), e.timestamp) for e in span.events],  # type: ignore[arg-type]
        links=[Link(link.context, _keep(link.attributes)) for link in span.links],  # type: ignore[arg-type]
        kind=span.kind,
        status=_status(span.status),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def otlp_configured() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_tracing(service_name: str, exporter: str = "none") -> None:
    """Install a tracer provider once per process.

    OTLP/HTTP export when the standard variables name an endpoint (batching, headers, timeouts from the
    standard ``OTEL_*`` variables too); ``exporter="console"`` prints spans as well, for development.

    With neither, no span is recorded (the ``always_off`` sampler): every request's and event's spans
    would be built, filled and dropped for nobody (issue 9's profile). Trace context still flows: each
    request and event still gets a trace id (log lines carry it, events pass it on), only not sampled.
    """
    global _provider
    if _provider is not None:
        return
    resource = Resource.create({"service.name": f"pathways-{service_name}"})
    exporting = otlp_configured() or exporter == "console"
    # With an exporter, the sampler is the standard variables' choice (OTEL_TRACES_SAMPLER; all by default).
    provider = TracerProvider(resource=resource, **({} if exporting else {"sampler": ALWAYS_OFF}))
    if otlp_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(AllowListExporter(OTLPSpanExporter())))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(AllowListExporter(ConsoleSpanExporter())))
    trace.set_tracer_provider(provider)
    _provider = provider


def flush_spans() -> None:
    """Export what is buffered (at shutdown, so a stopped service's last spans are not lost)."""
    if _provider is not None:
        _provider.force_flush(5000)


def app_telemetry() -> TelemetryConfig:
    """FastAPI's own OpenTelemetry instrumentation (``FastAPI(telemetry=...)``): a server span for every
    request, named by its route template, current while the request runs (so its log lines and the events
    it writes carry its trace). It replaced opentelemetry-instrumentation-fastapi, whose middleware
    matched every route again and assembled its attributes on each request whether or not the span was
    recorded: a tenth of intake's request path in issue 9's profile.

    Its OpenTelemetry logs stay off: they would carry exception messages and stack traces, which can
    quote a request's data (``shared.logs`` writes the scrubbed log lines). Metrics are Prometheus's
    (``shared.metrics``); no spans per dependency or serialisation, and none for the probes and /metrics,
    polled every few seconds.
    """
    return TelemetryConfig(tracing=True, metrics=False, logs=False, operation_spans=False,
                           exclude=lambda scope: scope.get("path") in PROBE_PATHS)


def instrument_client(client: AsyncClient) -> None:
    """Client spans for internal calls and webhooks; ``traceparent`` goes out with each request."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client)


@functools.cache
def tracer(name: str = "pathways") -> trace.Tracer:
    # One per name: ``get_tracer`` builds a new one each call (a span per consumed event showed it). A
    # tracer taken before ``configure_tracing`` is a proxy that follows the provider set later.
    return trace.get_tracer(name)


def safe_attributes(**attributes: object) -> dict[str, str]:
    """Keep only attributes on the allow-list, so identifying data cannot reach a trace by accident."""
    return {k.replace("__", "."): str(v) for k, v in attributes.items() if k.replace("__", ".") in ALLOWED_ATTRIBUTES}


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as message headers (``traceparent``, ``tracestate``)."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> Context:
    return propagate.extract(dict(headers or {}))


def stored_context() -> str:
    """The current trace context as JSON, for a row whose work continues later (outbox, webhooks)."""
    return jsontext.dumps_text(inject_headers())


def restored_context(stored: str | None) -> Context | None:
    """The context saved by ``stored_context``, or ``None`` (a new trace) when there was none."""
    headers = jsontext.loads(stored) if stored else {}
    return extract_context(headers) if "traceparent" in headers else None
