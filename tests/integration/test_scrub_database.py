"""A database error, as either backend words it, reaches a log line without the row's values."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.db import Database
from tests.log_capture import assert_none_logged, captured_logs

NAME, FAMILY = "Zyxwvuta", "Quillbrook"

async def test_a_database_error_logged_from_either_backend_quotes_no_value(database_url: str) -> None:
    """Parameters are hidden by the engine (``hide_parameters``); PostgreSQL's own ``DETAIL: Key (x)=(value)``
    and any other quoted value by the scrubber."""
    database = Database(database_url, [])
    insert_row = text("INSERT INTO leak_person VALUES (:name)")
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE leak_person (name TEXT PRIMARY KEY)"))
            await conn.execute(insert_row, {"name": f"{NAME} {FAMILY}"})
        with pytest.raises(IntegrityError) as duplicate:
            async with database.engine.begin() as conn:
                await conn.execute(insert_row, {"name": f"{NAME} {FAMILY}"})
    finally:
        await database.dispose()
    assert "hidden" in str(duplicate.value)
    with captured_logs() as captured:
        logging.getLogger("shared.db").error("write failed: %s", duplicate.value, exc_info=duplicate.value)
        logging.getLogger("sqlalchemy.engine").error("write failed: %s", duplicate.value)
    assert_none_logged(captured, (NAME, FAMILY))
