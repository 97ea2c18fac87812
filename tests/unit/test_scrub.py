"""The one scrubber, and each path by which identifying data could reach a log line or a span: a
message, a library's exception (pydantic, SQLAlchemy, httpx), uvicorn's error log, a traceback, an
uncaught exception, a request the API refuses with 422, a failed span's status."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, ValidationError
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert
from sqlalchemy.exc import IntegrityError

from shared import logs
from shared.problems import install_problem_handlers
from shared.scrub import scrub, scrub_exception, scrub_value
from shared.telemetry import AllowListExporter
from tests.log_capture import assert_none_logged, captured_logs

# Distinctive synthetic values: none of them may survive.
NAME, FAMILY = "Zyxwvuta", "Quillbrook"
BIRTH_DATE = "1987-02-29"
PHONE = "07700 900982"
POSTCODE = "LS7 9QX"
EMAIL = "zyxwvuta.quillbrook@example.org"
NHS_NUMBER = "943 476 5919"
SECRETS = (NAME, FAMILY, BIRTH_DATE, PHONE, "9QX", EMAIL, NHS_NUMBER, "s3cr3t-pa55")


@pytest.mark.parametrize(("text", "expected"), [
    (f"postcode {POSTCODE}, {POSTCODE.replace(' ', '')} or /areas/LS7%209QX", "postcode LS7 9**, LS79** or /areas/LS7 9**"),
    (f"call {PHONE}, +44 7700 900982 or 0113 496 0000", "call [phone], [phone] or [phone]"),
    (f"born {BIRTH_DATE} (29/02/1987)", "born [date] ([date])"),
    (f"NHS number {NHS_NUMBER} or 9434765919", "NHS number [number] or [number]"),
    (f"write to {EMAIL}", "write to [email]"),
    ("postgresql+asyncpg://intake:s3cr3t-pa55@db.example:5432/pathways", "postgresql+asyncpg://***@db.example:5432/pathways"),
    ("GET http://d/services?postcode=LS7+9QX&name=Zyx", "GET http://d/services?[query]"),
    ("  Value error [type=value_error, input_value='Zyxwvuta Quillbrook', input_type=str]",
     "  Value error [type=value_error, input_value=[redacted], input_type=str]"),
    ("[SQL: INSERT INTO person (name) VALUES (?)]\n[parameters: ('Zyxwvuta',)]\n(Background on this error at: x)",
     "[SQL: INSERT INTO person (name) VALUES (?)]\n[parameters: [redacted]]\n(Background on this error at: x)"),
    ("DETAIL:  Key (name)=(Zyxwvuta Quillbrook) already exists.", "DETAIL:  Key (name)=([redacted]) already exists."),
])
def test_the_scrubber_takes_identifying_values_out(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize("text", [
    "POST /fhir/Bundle 202 12.4 ms",
    "consumer router-referrals failed on event 0b7c4a44-8f38-4bd4-9a35-4f5d1b6e1b6a (delivery 2): TimeoutError",
    "trace 0af7651916cd43dd8448eb211c80319c at 2026-11-20T10:15:00Z on 127.0.0.1:8001, sector LS7 9, district LS7",
    "intake: database schema 0003 -> 0004",
])
def test_what_pathways_logs_itself_is_left_as_it_is(text: str) -> None:
    assert scrub(text) == text and scrub_exception(text) == text


def test_exception_text_loses_every_quoted_value_but_keeps_where_it_happened() -> None:
    traceback = (f'Traceback (most recent call last):\n  File "/srv/services/intake/api.py", line 12, in post\n'
                 f"    raise KeyError(name)\nKeyError: '{NAME} {FAMILY}'\n"
                 f'ValueError: invalid literal for int() with base 10: "{FAMILY}"')
    scrubbed = scrub_exception(traceback)
    assert NAME not in scrubbed and FAMILY not in scrubbed
    assert 'File "/srv/services/intake/api.py", line 12, in post' in scrubbed
    assert "KeyError: '[redacted]'" in scrubbed


def test_nested_values_are_scrubbed_and_others_kept() -> None:
    assert scrub_value({"a": [f"at {POSTCODE}", 3], "b": (EMAIL,), "c": None}) == {
        "a": ["at LS7 9**", 3], "b": ["[email]"], "c": None}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    with captured_logs() as stream:
        yield stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_clean(stream: io.StringIO) -> None:
    assert_none_logged(stream, SECRETS)


class Person(BaseModel):
    name: str
    age: int


def test_a_pydantic_validation_error_logged_with_its_traceback_quotes_no_input(captured: io.StringIO) -> None:
    try:
        Person.model_validate({"name": f"{NAME} {FAMILY}", "age": f"{BIRTH_DATE} {PHONE}"})
    except ValidationError:
        logging.getLogger("services.intake.api").exception("referral could not be parsed")
    assert_clean(captured)
    [line] = lines(captured)
    assert "ValidationError" in str(line["exc_info"]) and line["message"] == "referral could not be parsed"


def test_a_database_error_quotes_neither_parameters_nor_values(captured: io.StringIO) -> None:
    # The raw driver's message for a duplicate: SQLAlchemy adds the parameters unless hidden, and
    # shared.db hides them; the scrubber is the second line of defence for any engine that does not.
    engine = create_engine("sqlite://")
    person = Table("person", MetaData(), Column("name", String, primary_key=True))
    person.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(person).values(name=f"{NAME} {FAMILY}"))
    with pytest.raises(IntegrityError) as duplicate, engine.begin() as conn:
        conn.execute(insert(person).values(name=f"{NAME} {FAMILY}"))
    assert NAME in str(duplicate.value)  # what would have leaked
    logging.getLogger("sqlalchemy.engine").error("write failed: %s", duplicate.value)
    logging.getLogger("shared.db").error("write failed", exc_info=duplicate.value)
    assert_clean(captured)


def test_an_httpx_error_quotes_no_query_or_postcode(captured: io.StringIO) -> None:
    request = httpx.Request("GET", f"https://directory.example/areas/{POSTCODE}?name={NAME}&dob={BIRTH_DATE}")
    error = httpx.HTTPStatusError("Client error '404 Not Found' for url " + repr(str(request.url)),
                                  request=request, response=httpx.Response(404, request=request))
    logging.getLogger("services.notify.webhooks").warning("lookup failed: %s", error)
    logging.getLogger("httpx").warning("HTTP Request: GET %s", request.url)
    assert_clean(captured)


def test_uvicorn_s_error_log_of_a_failed_request_is_scrubbed(captured: io.StringIO) -> None:
    try:
        raise ValueError(f"cannot route {NAME} {FAMILY} at {POSTCODE}, {EMAIL}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    assert_clean(captured)
    [line] = lines(captured)
    # A message no pattern can clean (a name) is withheld whole; the type and where it happened stay.
    assert "ValueError: [message withheld]" in str(line["exc_info"]) and "test_scrub.py" in str(line["exc_info"])


def test_a_message_about_the_system_is_kept_and_scrubbed(captured: io.StringIO) -> None:
    from shared.crypto import KeyRingError

    try:
        try:
            raise KeyError(f"{NAME} {FAMILY}")
        except KeyError as exc:
            raise KeyRingError(f"key 'k9' is not in the key ring (case at {POSTCODE})") from exc
    except KeyRingError as exc:
        logging.getLogger("shared.crypto").exception("cannot decrypt: %s", exc)  # noqa: TRY401 - the path tested
    assert_clean(captured)
    [line] = lines(captured)
    assert "KeyRingError: key '[redacted]' is not in the key ring (case at LS7 9**)" in str(line["exc_info"])
    assert "KeyError: [message withheld]" in str(line["exc_info"])


def test_extra_fields_and_stack_info_are_scrubbed(captured: io.StringIO) -> None:
    logging.getLogger("pathways.access").info("request", extra={"http_route": f"/areas/{POSTCODE}",
                                                                 "detail": {"phone": PHONE}}, stack_info=True)
    assert_clean(captured)


def test_an_uncaught_exception_is_logged_through_the_scrubber(captured: io.StringIO,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored afterwards
    logs.configure_logging("intake")
    logging.captureWarnings(False)  # configure_logging's, not tested here
    root = logging.getLogger()
    root.handlers[0].setStream(captured)  # type: ignore[attr-defined]
    try:
        raise RuntimeError(f"bad setting DATABASE_URL='postgresql://u:s3cr3t-pa55@db/x' for {EMAIL}")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    assert_clean(captured)
    assert lines(captured)[-1]["level"] == "CRITICAL"


def test_a_warning_is_a_scrubbed_log_line(captured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    logging.captureWarnings(False)  # an earlier configure_logging's hook, undone by pytest's own
    logs.configure_logging("intake")
    logging.getLogger().handlers[0].setStream(captured)  # type: ignore[attr-defined]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"row for '{NAME} {FAMILY}' at {POSTCODE} truncated", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    assert_clean(captured)
    assert lines(captured)[-1]["logger"] == "py.warnings"


def test_a_422_answers_helpfully_and_logs_nothing_identifying(captured: io.StringIO) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/people")
    async def create(person: Person) -> dict[str, str]:
        return {}

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post("/people", json={"name": f"{NAME} {FAMILY}", "age": f"{PHONE} {POSTCODE}"})

    import asyncio

    refused = asyncio.run(call())
    assert refused.status_code == 422
    body = refused.json()
    assert body["errors"] == [{"loc": ["body", "age"], "msg": "Input should be a valid integer, unable to parse "
                               "string as an integer", "type": "int_parsing"}]
    for value in (NAME, PHONE, "9QX"):
        assert value not in refused.text
    logging.getLogger("uvicorn.error").info("served")
    assert_clean(captured)


def test_a_failed_span_s_status_keeps_the_exception_type_only() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AllowListExporter(memory)))
    with pytest.raises(ValueError), provider.get_tracer("t").start_as_current_span(f"GET /areas/{POSTCODE}"):
        raise ValueError(f"{NAME} {FAMILY} {PHONE}")
    [span] = memory.get_finished_spans()
    assert span.status.description == "ValueError" and span.name == "GET /areas/LS7 9**"
    exported = span.to_json()
    for value in SECRETS:
        assert value not in exported


def test_a_validation_error_is_told_by_where_and_what_kind_only(captured: io.StringIO) -> None:
    from pydantic import field_validator

    class Referral(BaseModel):
        code: str
        count: int

        @field_validator("code")
        @classmethod
        def known(cls, value: str) -> str:
            raise ValueError(f"{value} is not a code we know")  # a validator's words embed the value

    try:
        Referral.model_validate({"code": f"{NAME} {FAMILY}", "count": 19870229})
    except ValidationError as exc:
        logging.getLogger("services.intake.api").exception("bad referral: %s", exc)  # noqa: TRY401 - tested
    assert_clean(captured)
    [line] = lines(captured)
    assert "1 validation error(s): code [value_error]" in str(line["message"])
    assert "ValidationError: 1 validation error(s): code [value_error]" in str(line["exc_info"])


def test_fastapi_s_request_validation_error_is_told_without_its_input(captured: io.StringIO) -> None:
    from fastapi.exceptions import RequestValidationError

    error = RequestValidationError([{"type": "int_parsing", "loc": ("body", "age"), "msg": "bad",
                                     "input": 19830719}, {"type": "missing", "loc": ("body", "name"),
                                                          "msg": "Field required", "input": {"n": NAME}}])
    logging.getLogger("uvicorn.error").error("refused: %s", error)
    assert_clean(captured)
    assert "19830719" not in captured.getvalue()
    assert "body.age [int_parsing]; body.name [missing]" in captured.getvalue()


_SURROUNDINGS = st.text(alphabet=st.sampled_from("abc XYZ,.;()[]/=-_"), max_size=20)


@given(before=_SURROUNDINGS, after=_SURROUNDINGS,
       digits=st.from_regex(r"7[0-9]{9}", fullmatch=True), style=st.sampled_from(["0{a} {b}", "+44{a}{b}", "0{a}{b}"]),
       inward=st.from_regex(r"[0-9][ABD-HJLNP-UW-Z]{2}", fullmatch=True))
def test_a_phone_number_or_full_postcode_never_survives_whatever_surrounds_it(
        before: str, after: str, digits: str, style: str, inward: str) -> None:
    phone = style.format(a=digits[:4], b=digits[4:])
    postcode = f"LS7 {inward}"
    for value, text in ((phone, f"{before}{phone}{after}"), (postcode, f"{before} {postcode} {after}")):
        scrubbed = scrub(text)
        assert value not in scrubbed and value.replace(" ", "") not in scrubbed.replace(" ", "")
        assert scrub(scrubbed) == scrubbed  # applying it again changes nothing
