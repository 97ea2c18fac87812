"""OpenTelemetry set-up and W3C trace-context propagation over NATS headers.

Span attributes carry identifiers that mean nothing outside Pathways (case ids, event ids, subjects)
and never identifying data: ``safe_attributes`` is the one place that decides what may be recorded.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

ALLOWED_ATTRIBUTES = frozenset(
    {"pathways.case_id", "pathways.event_id", "pathways.offer_id", "messaging.destination.name",
     "messaging.system", "messaging.consumer.group.name", "pathways.delivery"}
)

_configured = False


def configure_tracing(service_name: str, exporter: str = "none") -> None:
    """Install a tracer provider once per process; ``exporter`` is ``none`` or ``console``."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"pathways-{service_name}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str = "pathways") -> trace.Tracer:
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
