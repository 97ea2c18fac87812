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

It runs on every log line, so it is one precompiled pattern per strength, applied in one pass, and text
that cannot hold any of these (no digit, no ``@``, no ``=``, no ``:``, no quote) is returned untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# Outward code + inward code; the inward code's letters are what narrow a postcode to a few addresses.
# Written with a space, none, or URL-encoded ("LS7%209ZZ", "LS7+9ZZ").
_POSTCODE = r"(?P<postcode>\b(?P<sector>[A-Z]{1,2}[0-9][A-Z0-9]?(?:\s*|%20|\+)[0-9])[A-Z]{2}\b)"
_EMAIL = r"(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
# A URL's credentials (scheme://user:password@host) and its query string (searches, tokens).
_URL_CREDENTIALS = r"(?P<credentials>(?<=://)[^/\s:@]+:[^/\s@]+@)"
_QUERY = r"(?P<query>(?<=[\w/])\?[^\s'\"<>]+)"
# UK phone numbers (+44 or 0, then 9-10 digits with optional spaces or dashes) and NHS numbers (3-3-4).
_PHONE = r"(?P<phone>(?<![\w.:/-])(?:\+44\s?\(?0?\)?\s?|\(?0)\d{2,4}\)?(?:[\s-]?\d){6,8}(?![\w.:-]))"
_NHS_NUMBER = r"(?P<nhs>(?<![\w.:/-])\d{3}[\s-]?\d{3}[\s-]?\d{4}(?![\w.:-]))"
# A date of birth: 1990-04-01, 01/04/1990, 1/4/90. A timestamp (a date followed by T and a time) stays.
_DATE = r"(?P<date>\b(?:\d{4}-\d{2}-\d{2}(?!T\d)|\d{1,2}/\d{1,2}/(?:\d{4}|\d{2}))\b)"
# What libraries quote from the data they were given.
_PYDANTIC_INPUT = r"(?P<pydantic>(?<=input_value=).*?(?=, input_type=))"
_SQL_PARAMETERS = r"(?P<sqlparams>(?<=\[parameters: ).*?(?=\]\s*(?:\(Background|$)))"
_PG_KEY_VALUE = r"(?P<pgkey>(?<=\)=\().*?(?=\)\s+(?:already exists|is not present|is still referenced|conflicts)))"

_TEXT = re.compile(
    "|".join((_URL_CREDENTIALS, _QUERY, _EMAIL, _POSTCODE, _DATE, _PHONE, _NHS_NUMBER, _PYDANTIC_INPUT,
              _SQL_PARAMETERS, _PG_KEY_VALUE)),
    re.IGNORECASE | re.MULTILINE,
)
# Quoted literals in exception text: 'x', "x" (a repr of a value: a name, a free-text note). A traceback's
# ``File "path"`` is kept: it is where, never what.
_FILE = r"(?P<keep>(?<=File )\"[^\"\n]*\"(?=, line ))"
_QUOTED = r"(?P<quoted>'(?:[^'\\\n]|\\.)+'|\"(?:[^\"\\\n]|\\.)+\")"
_EXCEPTION = re.compile("|".join((_FILE, _TEXT.pattern, _QUOTED)), re.IGNORECASE | re.MULTILINE)
# A string with none of these characters cannot match anything above.
_MAY_MATCH = re.compile(r"[0-9@=:'\"?]")

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


def scrub(text: str) -> str:
    """``text`` without the identifying values it may quote (see the module's docstring)."""
    if not _MAY_MATCH.search(text):
        return text
    return _TEXT.sub(_replace, text)


def scrub_exception(text: str) -> str:
    """An exception's message or a traceback, without any quoted value and without what ``scrub`` takes."""
    if not _MAY_MATCH.search(text):
        return text
    return _EXCEPTION.sub(_replace, text)


def scrub_value(value: Any) -> Any:
    """``scrub`` applied to every string in a JSON-like value (dicts, lists, tuples); the rest unchanged."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {key: scrub_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(item) for item in value]
    return value
