"""The four OpenAPI documents, checked into docs/openapi/ so reviewers see API changes in diffs.

``python -m services.openapi_docs`` (or ``make openapi``) writes them; ``--check`` exits 1 when a
checked-in document differs from what the code serves. The documents do not depend on settings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

DOCS = Path(__file__).resolve().parent.parent / "docs" / "openapi"
# A placeholder key ring: building the intake app needs one; the document does not show it.
PLACEHOLDER_KEYS = "doc:" + "A" * 43 + "="


def _intake() -> FastAPI:
    from services.intake.app import create_app
    from services.intake.settings import IntakeSettings

    return create_app(IntakeSettings(encryption_keys=PLACEHOLDER_KEYS, active_key_id="doc"))


def _router() -> FastAPI:
    from services.router.app import create_app

    return create_app()


def _directory() -> FastAPI:
    from services.directory.app import create_app

    return create_app()


def _notify() -> FastAPI:
    from services.notify.app import create_app

    return create_app()


APPS: dict[str, Callable[[], FastAPI]] = {"intake": _intake, "router": _router, "directory": _directory,
                                          "notify": _notify}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def documents() -> dict[str, str]:
    return {name: render(build().openapi()) for name, build in APPS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    DOCS.mkdir(parents=True, exist_ok=True)
    for name, text in documents().items():
        path = DOCS / f"{name}.json"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run `make openapi`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
