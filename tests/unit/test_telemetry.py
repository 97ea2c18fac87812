"""What leaves a process as traces and log lines: allow-listed attributes only, and the trace id on
every log line."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.logs import PathwaysJsonFormatter
from shared.telemetry import AllowListExporter, restored_context, stored_context


def test_exported_spans_keep_only_allow_listed_attributes():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AllowListExporter(memory)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /areas/{area}", attributes={
        "http.route": "/areas/{area}", "http.target": "/areas/LS7%209ZZ", "url.full": "http://d/areas/LS7 9ZZ",
        "http.status_code": 200, "pathways.case_id": "c1",
    }) as span:
        span.record_exception(ValueError("Jane Example, born 1990-04-01"))
    [exported] = memory.get_finished_spans()
    assert dict(exported.attributes) == {"http.route": "/areas/{area}", "http.status_code": 200,
                                         "pathways.case_id": "c1"}
    [event] = exported.events
    assert dict(event.attributes) == {"exception.type": "ValueError"}
    assert "Jane" not in str(exported.to_json()) and "9ZZ" not in str(exported.to_json())


def test_stored_trace_context_continues_the_trace_later():
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    assert restored_context(None) is None and restored_context("{}") is None
    with tracer.start_as_current_span("request") as request:
        saved = stored_context()
    with tracer.start_as_current_span("later", context=restored_context(saved)) as later:
        assert later.parent is not None and later.parent.span_id == request.get_span_context().span_id
        assert later.get_span_context().trace_id == request.get_span_context().trace_id


def test_each_log_line_is_json_with_the_trace_id():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PathwaysJsonFormatter("router"))
    logger = logging.getLogger("pathways.test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("consume") as span:
            logger.warning("consumer %s failed (%s)", "router-referrals", "TimeoutError")
        logger.warning("outside any trace")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "consumer router-referrals failed (TimeoutError)"
    assert inside["level"] == "WARNING" and inside["service"] == "router" and inside["logger"] == "pathways.test.logs"
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert "time" in inside and "trace_id" not in outside


SAMPLING = """
import json, os, sys
from opentelemetry import trace
from shared.telemetry import configure_tracing, stored_context
configure_tracing("intake", sys.argv[1])
with trace.get_tracer("t").start_as_current_span("request") as span:
    context = span.get_span_context()
    print(json.dumps({"recording": span.is_recording(), "valid": context.is_valid,
                      "carried": json.loads(stored_context()).get("traceparent", "").split("-")[1:2]
                      == [format(context.trace_id, "032x")]}))
"""


@pytest.mark.parametrize(("exporter", "recording"), [("none", False), ("console", True)])
def test_spans_are_recorded_only_when_something_exports_them_and_the_trace_id_flows_either_way(
    exporter: str, recording: bool
):
    # A process of its own: the tracer provider is set once per process.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", SAMPLING, exporter], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2], check=True)
    seen = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"recording"')))
    assert seen == {"recording": recording, "valid": True, "carried": True}
