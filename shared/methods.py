"""Which methods a path allows, said correctly: OPTIONS answers 204 with ``Allow``, and a 405 lists every
method of every route on the path (Starlette lists only the first route's, so a path served by a
public GET and an ops PUT claimed to allow GET alone). Read from the OpenAPI document, which lists
every operation of every path."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


class AllowHeader:
    """ASGI middleware: OPTIONS → 204 with ``Allow``; every 405 carries the path's full ``Allow``."""

    def __init__(self, app: ASGIApp, document: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.document = document
        self._paths: list[tuple[re.Pattern[str], str]] | None = None

    def allowed(self, path: str) -> str | None:
        if self._paths is None:
            self._paths = [
                (compile_path(template)[0],
                 ", ".join(sorted({m.upper() for m in operations if m in HTTP_METHODS} | {"OPTIONS"})))
                for template, operations in self.document().get("paths", {}).items()
            ]
        return next((methods for pattern, methods in self._paths if pattern.match(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Only OPTIONS and 405s look the path up (the document is built on first use, not on every request).
        if scope["method"] == "OPTIONS" and (allowed := self.allowed(scope["path"])):
            await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", allowed.encode())]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_allow(message: Message) -> None:
            if (message["type"] == "http.response.start" and message["status"] == 405
                    and (allowed := self.allowed(scope["path"]))):
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allowed.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_allow)
