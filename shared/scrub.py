"""The one scrubber: what identifying data a string could hold, taken out before it leaves the process.

Pathways' own log messages and span names hold only codes, ids and exception types. What they cannot
control is text made by libraries from the data they were given: an exception's message (a pydantic
``ValidationError`` quotes ``input_value``, SQLAlchemy quotes ``[parameters: ...]``, PostgreSQL quotes
``Key (x)=(value)``, httpx quotes URLs), a traceback, uvicorn's error log. Every log line
(``shared.logs``) and every exported span (``shared.telemetry``) passes through here.

Two strengths:

- ``scrub``: for any text. Full postcodes become their sector (``LS7 9ZZ`` → ``LS7 9**``: the district
  and sector are not identifying, the full postcode is), and phone numbers, e-mail addresses, NHS
  numbers, dates (a date of birth; ``T``-timestamps are kept), URL credentials and query strings, and
  the values quoted by pydantic, SQLAlchemy and PostgreSQL are replaced by a ``[kind]`` marker.
- ``scrub_exception``: for exception messages and tracebacks, which may quote *any* value (a name has
  no pattern): every quoted literal goes too, as well as everything ``scrub`` takes.
- ``scrub_traceback``: a formatted traceback of a known exception. A message no pattern can clean (a
  ``ValueError`` raised by ``int()`` or a library's ``KeyError`` quoting a name, unquoted) is withheld
  whole, unless the exception is Pathways' own or one of the libraries' whose messages speak of the
  system (SQLAlchemy with parameters hidden, NATS, httpx, asyncpg, pydantic, network errors); what is
  kept then goes through ``scrub_exception``. A validation error (pydantic's, FastAPI's) is told by
  its locations and error types only.

It runs on every log line, so its patterns are precompiled and each runs only when a cheap trigger
(``@``, ``://``, four digits in a row...) is in the text; text that cannot hold any of them is returned
untouched.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from typing import Any

REDACTED = "[redacted]"
WITHHELD = "[message withheld]"
# Exceptions whose messages describe the system, not the data (and are scrubbed all the same).
_SYSTEM_MESSAGES = ("services.", "shared.", "sqlalchemy.", "nats.", "httpx", "httpcore", "asyncpg.", "alembic",
                    "uvicorn", "h11", "anyio", "pydantic", "starlette.", "fastapi.")

# Outward code + inward code; the inward code's letters are what narrow a postcode to a few addresses.
# Written with a space, none, or URL-encoded ("LS7%209ZZ", "LS7+9ZZ").
_POSTCODE = r"(?P<postcode>\b(?P<sector>[A-Z]{1,2}[0-9][A-Z0-9]?(?:\s*|%20|\+)[0-9])[A-Z]{2}\b)"
_EMAIL = r"(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
# A URL's credentials (scheme://user:password@host) and its query string (searches, tokens).
_URL_CREDENTIALS = r"(?P<credentials>(?<=://)[^/\s:@]+:[^/\s@]+@)"
_QUERY = r"(?P<query>(?<=[\w/])\?[^\s'\"<>]+)"
# UK phone numbers (+44 or 0, then 9-10 digits with optional spaces or dashes) and NHS numbers (3-3-4), also
# when glued to a word (``tel:07700...``); never inside a longer number or after a decimal point. (A UUID
# whose last group happens to be all digits loses it in that line: a small price next to a missed number.)
_PHONE = r"(?P<phone>(?<!\d)(?<!\d\.)(?:\+44\s?\(?0?\)?\s?|\(?0)\d{2,4}\)?(?:[\s-]?\d){6,8}(?!\d))"
_NHS_NUMBER = r"(?P<nhs>(?<!\d)(?<!\d\.)\d{3}[\s-]?\d{3}[\s-]?\d{4}(?!\d))"
# A date of birth: 1990-04-01, 01/04/1990, 1/4/90. A timestamp (a date followed by T and a time) stays.
_DATE = r"(?P<date>\b(?:\d{4}-\d{2}-\d{2}(?!T\d)|\d{1,2}/\d{1,2}/(?:\d{4}|\d{2}))\b)"
# What libraries quote from the data they were given.
_PYDANTIC_INPUT = r"(?P<pydantic>(?<=input_value=).*?(?=, input_type=))"
_SQL_PARAMETERS = r"(?P<sqlparams>(?<=\[parameters: ).*?(?=\]\s*(?:\(Background|$)))"
_PG_KEY_VALUE = r"(?P<pgkey>(?<=\)=\().*?(?=\)\s+(?:already exists|is not present|is still referenced|conflicts)))"

_FLAGS = re.IGNORECASE | re.MULTILINE


def _rule(trigger: str, *patterns: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A pattern, run only when its cheap trigger is found (most log lines trigger nothing)."""
    return re.compile(trigger, _FLAGS), re.compile("|".join(patterns), _FLAGS)


_RULES = (
    _rule("://", _URL_CREDENTIALS),
    _rule(r"\?", _QUERY),
    _rule("@", _EMAIL),
    _rule("input_value=", _PYDANTIC_INPUT),
    _rule(r"\[parameters: ", _SQL_PARAMETERS),
    _rule(r"\)=\(", _PG_KEY_VALUE),
    # A postcode's inward code is a digit and two letters.
    _rule(r"[0-9][A-Z]{2}\b", _POSTCODE),
    # Every phone number, NHS number and date has a run of four digits, or a d/d/d date.
    _rule(r"[0-9]{4}|[0-9]/[0-9]", _DATE, _PHONE, _NHS_NUMBER),
)
# Quoted literals in exception text: 'x', "x" (a repr of a value: a name, a free-text note). A traceback's
# ``File "path"`` is kept: it is where, never what.
_FILE = r"(?P<keep>(?<=File )\"[^\"\n]*\"(?=, line ))"
_QUOTED = r"(?P<quoted>'(?:[^'\\\n]|\\.)+'|\"(?:[^\"\\\n]|\\.)+\")"
_QUOTES = _rule("['\"]", _FILE, _QUOTED)
# Text in which no trigger is found is returned as it is, after one search.
_ANY_RULE = re.compile("|".join(trigger.pattern for trigger, _ in _RULES), _FLAGS)
_ANY_EXCEPTION_RULE = re.compile("|".join(trigger.pattern for trigger, _ in (*_RULES, _QUOTES)), _FLAGS)

_MARKERS = {"email": "[email]", "credentials": "***@", "query": "?[query]", "phone": "[phone]",
            "nhs": "[number]", "date": "[date]", "pydantic": REDACTED, "sqlparams": REDACTED,
            "pgkey": REDACTED, "quoted": "'[redacted]'"}


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "keep":
        return match.group(0)
    if kind == "postcode":
        return re.sub(r"%20|\+|\s+", " ", match.group("sector")) + "**"
    return _MARKERS[kind or ""]


def _apply(text: str, rules: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...]) -> str:
    for trigger, pattern in rules:
        if trigger.search(text):
            text = pattern.sub(_replace, text)
    return text


def scrub(text: str) -> str:
    """``text`` without the identifying values it may quote (see the module's docstring)."""
    if not _ANY_RULE.search(text):
        return text
    return _apply(text, _RULES)


def scrub_exception(text: str) -> str:
    """An exception's message or a traceback, without any quoted value and without what ``scrub`` takes."""
    if not _ANY_EXCEPTION_RULE.search(text):
        return text
    # Library-quoted values first (their markers are not quoted), then every quoted literal left.
    return _apply(text, (*_RULES, _QUOTES))


def scrub_value(value: Any) -> Any:
    """``scrub`` applied to every string in a JSON-like value (dicts, lists, tuples); the rest unchanged."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {key: scrub_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(item) for item in value]
    return value


def message_kept(exc: BaseException) -> bool:
    """Does this exception's message describe the system (kept, scrubbed) rather than quote data (withheld)?"""
    kind = type(exc)
    return kind.__module__.startswith(_SYSTEM_MESSAGES) or issubclass(kind, (OSError, TimeoutError,
                                                                             asyncio.CancelledError))


def _chain(exc: BaseException, seen: set[int]) -> Iterator[BaseException]:
    if id(exc) in seen:
        return
    seen.add(id(exc))
    yield exc
    for linked in (exc.__cause__, exc.__context__, *getattr(exc, "exceptions", ())):
        if isinstance(linked, BaseException):
            yield from _chain(linked, seen)


def validation_summary(exc: BaseException) -> str | None:
    """A validation error (pydantic's, FastAPI's) as where and what kind, without its input or message.

    Their messages quote the input (``input_value=...``, FastAPI's ``'input': ...``) and a validator's
    own words may embed the value; the location and error type say what is wrong without either.
    ``None`` for any other exception."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return None
    try:
        found = errors(include_input=False, include_url=False, include_context=False)
    except TypeError:  # FastAPI's errors() takes no options
        found = errors()
    if not isinstance(found, (list, tuple)):
        return None
    parts = [f"{'.'.join(str(part) for part in error.get('loc', ()))} [{error.get('type', '')}]"
             for error in found if isinstance(error, Mapping)]
    return f"{len(parts)} validation error(s): " + "; ".join(parts)


def withhold_messages(text: str, exc: BaseException, *, qualified: bool = True) -> str:
    """``text`` with the message of every exception in ``exc``'s chain that may quote data withheld (a
    validation error's replaced by its locations and error types).

    ``qualified``: the message appears as a traceback shows it (``KeyError: 'x'``); otherwise as ``%s``
    formats the exception (just its message)."""
    for linked in _chain(exc, set()):
        message = str(linked)
        if not message:
            continue
        replacement = validation_summary(linked)
        if replacement is None:
            if message_kept(linked):
                continue
            replacement = WITHHELD
        if qualified:
            name = type(linked).__qualname__
            text = text.replace(f"{name}: {message}", f"{name}: {replacement}")
        else:
            text = text.replace(message, replacement)
    return text


def scrub_traceback(text: str, exc: BaseException | None) -> str:
    """A formatted traceback of ``exc``: messages that may quote data withheld, the rest strongly scrubbed."""
    return scrub_exception(withhold_messages(text, exc) if exc is not None else text)
