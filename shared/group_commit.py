"""Group commit: many requests' inserts committed together, in one transaction (issue 9).

Under load most of a write's cost is per transaction, not per row: on SQLite a turn of the one writer
slot, ``BEGIN IMMEDIATE``, a commit with its fsync, and a hop to the driver's thread and back for every
statement; on PostgreSQL a round trip per statement and a WAL flush per commit. A request that only
inserts rows it has built beforehand (intake's new referrals: the referral, its outbox event, its
idempotency records) hands them to a ``GroupCommit`` and waits: one writer task takes everything
queued meanwhile and inserts it with one ``executemany`` per table in one transaction. Each caller
returns only once its rows are committed, so a 202 still means "stored durably".

A conflict (a retry's idempotency key already taken) must fail only its own request: when a batch
fails on an ``IntegrityError``, its items are retried one transaction each, and only the conflicting
one raises. Any other failure (the database away, no writer slot within the wait) fails every caller
in the batch with that error: nothing of theirs was stored, and each answers 503 as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pydantic.fields import FieldInfo
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from shared.db import Database, insert_into, listing_outbox_rows

# A row to insert: a table model instance, or its table and column values (``row_values``).
Row: TypeAlias = SQLModel | tuple[Table, dict[str, Any]]


def row_values(model: type[SQLModel], **given: Any) -> tuple[Table, dict[str, Any]]:
    """The column values ``model(**given)`` would insert, defaults filled as SQLModel fills them (in the
    fields' order, each factory called once), without building the instance: a table model's instance
    sets every attribute through SQLAlchemy's instrumentation, the largest cost of a new referral's rows
    (issue 9). A primary key left to the database is omitted, as ``_values`` omits it."""
    table, columns = _columns(model)
    values: dict[str, Any] = {}
    for key, primary_key, info in columns:
        if key in given:
            value = given[key]
        else:
            value = info.get_default(call_default_factory=True, validated_data=values)
        if value is None and primary_key:
            continue
        values[key] = value
    return table, values


@functools.cache
def _columns(model: type[SQLModel]) -> tuple[Table, tuple[tuple[str, bool, FieldInfo], ...]]:
    """A table model's columns in order, each with its field (for its default), looked up once."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table, tuple((c.key, c.primary_key, model.model_fields[c.key]) for c in table.columns)


@dataclass
class _Pending:
    rows: Sequence[Row]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self) -> None:
        # A caller that went away never reads its outcome: mark it read, so asyncio does not log it.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())


def _values(row: Row) -> tuple[Table, dict[str, Any]]:
    """The row as its table's column values; a primary key left to the database (``None``) is omitted."""
    if isinstance(row, tuple):
        return row
    table: Table = row.__table__  # type: ignore[attr-defined]
    values = {}
    for column in table.columns:
        value = getattr(row, column.key)
        if value is None and column.primary_key:
            continue
        values[column.key] = value
    return table, values


def _grouped(rows: Iterable[Row]) -> list[tuple[Table, list[dict[str, Any]]]]:
    """Rows as one insert per table and set of columns, tables in the order first seen (parents before
    children, as the callers list them)."""
    groups: dict[tuple[Table, frozenset[str]], list[dict[str, Any]]] = {}
    for row in rows:
        table, values = _values(row)
        groups.setdefault((table, frozenset(values)), []).append(values)
    return [(table, values) for (table, _), values in groups.items()]


class GroupCommit:
    """Inserts from many callers, committed together by one writer task."""

    def __init__(self, db: Database, *, max_batch: int = 64) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, rows: Sequence[Row]) -> None:
        """Insert ``rows`` (built by the caller; parents first) and return once they are committed.

        Raises ``IntegrityError`` when these rows conflict with stored ones (the others in the batch
        commit regardless), or the database's error when the batch could not be written at all.
        """
        pending = _Pending(rows)
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="group-commit")
        # The caller going away (a client disconnect) must not cancel the batch it joined.
        await asyncio.shield(pending.done)

    async def drain(self) -> None:
        """Wait for everything queued to be written (at shutdown)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    async def _write(self) -> None:
        # Everything that queued while the previous batch was committing goes in the next one: no
        # deliberate delay, so a lone request is written at once and a burst shares transactions.
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                await self._commit([row for item in batch for row in item.rows])
            except IntegrityError as exc:
                if len(batch) == 1:
                    _settle(batch[0], exc)
                    continue
                for item in batch:  # find the one(s) that conflict; the rest commit
                    try:
                        await self._commit(item.rows)
                    except Exception as alone:  # noqa: BLE001 - handed to the caller it belongs to
                        _settle(item, alone)
                    else:
                        _settle(item, None)
            except Exception as exc:  # noqa: BLE001 - nothing in the batch was stored: every caller says so
                for item in batch:
                    _settle(item, exc)
            else:
                for item in batch:
                    _settle(item, None)

    async def _commit(self, rows: Sequence[Row]) -> None:
        async with self.db.statements() as connection:
            for table, values in _grouped(rows):
                with listing_outbox_rows(connection, table, values):
                    await connection.execute(insert_into(table), values)


def _settle(item: _Pending, error: BaseException | None) -> None:
    if item.done.done():
        return
    if error is None:
        item.done.set_result(None)
    else:
        item.done.set_exception(error)
