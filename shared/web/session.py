"""Web sessions: an encrypted, authenticated cookie with an idle timeout, keyed to a named credential.

The cookie is a Fernet token (``cryptography``: AES-CBC + HMAC-SHA256 with a timestamp), so it is
opaque to the browser and to anyone who sees it, and its age is checked on every request: a session
that was idle longer than ``idle_seconds`` is gone (a case worker's screen may be seen by others). It
is re-issued with a fresh timestamp on every signed-in page, so only idleness ends it early.

A session holds the credential it was opened with, and every request verifies that credential again
through the same verifier the API uses: revoking, rotating or expiring the credential ends every
session opened with it. Nothing about a survivor is ever stored in a session.

Several keys may be configured (``PATHWAYS_WEB_SESSION_KEYS``, comma-separated Fernet keys): the
first encrypts, all decrypt, so keys rotate without signing everyone out.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from fastapi import Request, Response

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
# Kept only in this process when none is configured (development and in-process tests).
_EPHEMERAL_KEY = Fernet.generate_key().decode()


@dataclass
class WebSession:
    """What the cookie carries: a CSRF token, and once signed in, the credential and when it began."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    key: str | None = None
    since: float = field(default_factory=time.time)
    flash: str | None = None

    def to_json(self) -> bytes:
        return json.dumps({"csrf": self.csrf, "key": self.key, "since": self.since, "flash": self.flash}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> WebSession:
        value: dict[str, Any] = json.loads(data)
        return cls(csrf=str(value["csrf"]), key=value.get("key"), since=float(value["since"]),
                   flash=value.get("flash"))


class SessionCodec:
    """Encrypts sessions into cookie values and back, refusing ones idle too long or too old."""

    def __init__(self, keys: str, *, idle_seconds: int, max_age_seconds: int) -> None:
        configured = [k.strip() for k in keys.split(",") if k.strip()]
        if not configured:
            # Development only (production refuses to sign anyone in without configured keys).
            log.info("no PATHWAYS_WEB_SESSION_KEYS configured: web sessions last only as long as this process")
            configured = [_EPHEMERAL_KEY]
        self.fernet = MultiFernet([Fernet(k.encode()) for k in configured])
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds

    def encode(self, session: WebSession) -> str:
        return self.fernet.encrypt(session.to_json()).decode()

    def decode(self, value: str | None) -> WebSession | None:
        if not value:
            return None
        try:
            session = WebSession.from_json(self.fernet.decrypt(value.encode(), ttl=self.idle_seconds))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        if time.time() - session.since > self.max_age_seconds:
            return None
        return session


@dataclass(frozen=True)
class CookiePolicy:
    """HttpOnly always, SameSite=Strict always, Secure (and the ``__Host-`` prefix) outside development."""

    name: str
    secure: bool

    @property
    def cookie_name(self) -> str:
        # __Host-: only ever set by this host, over HTTPS, for the whole site; browsers enforce it.
        return f"__Host-{self.name}" if self.secure else self.name

    def read(self, request: Request) -> str | None:
        return request.cookies.get(self.cookie_name)

    def write(self, response: Response, value: str, *, max_age: int) -> None:
        response.set_cookie(self.cookie_name, value, max_age=max_age, path="/", secure=self.secure,
                            httponly=True, samesite="strict")

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.cookie_name, path="/", secure=self.secure, httponly=True, samesite="strict")


def generate_session_key() -> str:
    """A new key for ``PATHWAYS_WEB_SESSION_KEYS``."""
    return Fernet.generate_key().decode()
