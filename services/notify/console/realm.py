"""The console's and the reports' sign-in realms: the directory's ops-user credentials, checked on every
request. The console is for ops users; the reports for ops users and commissioners, who never see a case."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Caller, CallerKind
from shared.web.pages import Pages
from shared.web.realm import WebRealm

HERE = Path(__file__).parent
PAGES = Pages([HERE / "templates", HERE.parent / "reports" / "templates"])


def _verifier(*kinds: CallerKind):  # type: ignore[no-untyped-def]
    async def verify(request: Request, key: str, session: AsyncSession) -> Caller | None:
        caller: Caller | None = await request.app.state.verify_ops(request, key, session)
        return caller if caller is not None and caller.kind in kinds else None

    return verify


CONSOLE = WebRealm(name="console", title="Ops console", prefix="/console", verify=_verifier(CallerKind.ops),
                   pages=PAGES, credential_label="Ops key",
                   credential_hint="Your own ops credential (pw_ops_…), issued by another ops user. "
                                   "Commissioners sign in to the reports (/reports) instead.")
REPORTS = WebRealm(name="reports", title="Reports", prefix="/reports",
                   verify=_verifier(CallerKind.ops, CallerKind.commissioner), pages=PAGES,
                   credential_label="Ops or commissioner key",
                   credential_hint="Your own credential (pw_ops_…): reports show counts only, never a case.")

OpsWeb = Annotated[Caller, Depends(CONSOLE.signed_in)]
ReportsWeb = Annotated[Caller, Depends(REPORTS.signed_in)]


def session_key(request: Request) -> str:
    """The signed-in person's own credential, for calls made on their behalf to the other services."""
    key: str = request.state.web.session.key
    return key
