"""Ops users: named credentials held by one owner, the directory (``services/directory/credentials.py``).

The other services ask it on every ops request (``POST /internal/ops/authenticate``, with the service
token). Ops requests are few, so there is no cache: a revoked or expired ops credential stops working
everywhere at once. If the directory cannot answer, ops endpoints elsewhere answer 503 rather than
guess.
"""

from __future__ import annotations

import httpx
from fastapi import HTTPException, Request, status
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Caller, CallerKind

AUTHENTICATE_PATH = "/internal/ops/authenticate"
TIMEOUT_SECONDS = 5.0


class OpsKey(BaseModel):
    api_key: str


class OpsIdentity(BaseModel):
    ops_user_id: str
    name: str
    # "ops" or "commissioner" (reports only): ``shared.auth.require_ops`` refuses a commissioner.
    role: str = "ops"


class RemoteOpsVerifier:
    """An ``OpsVerifier`` for services other than the directory."""

    def __init__(self, directory_url: str) -> None:
        self.directory_url = directory_url.rstrip("/")

    async def __call__(self, request: Request, key: str, session: AsyncSession) -> Caller | None:
        runtime = request.app.state.runtime
        try:
            response = await runtime.http.post(
                f"{self.directory_url}{AUTHENTICATE_PATH}", json={"api_key": key}, timeout=TIMEOUT_SECONDS,
                headers=runtime.settings.service_headers(),
            )
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 404:
            return None
        if response is None or response.status_code != 200:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="Cannot check ops credentials right now.",
                                headers={"Retry-After": "5"})
        identity = OpsIdentity.model_validate(response.json())
        kind = CallerKind.commissioner if identity.role == CallerKind.commissioner else CallerKind.ops
        return Caller(kind, identity.ops_user_id)
