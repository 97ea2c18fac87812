"""Explicit state machines: each declared once, each move guarded in the database by compare-and-set.

A machine lists, for every state, the states it may move to. ``advance`` moves a row with
``UPDATE … WHERE id = :id AND <state> = :current``: of two racing writers (a provider accepting as
the deadline timer expires the offer, two notify instances) exactly one moves the row, and the
loser sees the state the winner left. Asking for the state a row is already in is a repeat, not a
move: it changes nothing and announces nothing, so callers stay idempotent. Anything else is an
``IllegalTransition``, which the APIs answer with 409 and a sentence saying why.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Update
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

# A row moved by someone else between our read and our write is read again and the move re-checked;
# a row that keeps changing under us this often is a conflict the caller should retry.
MAX_ATTEMPTS = 5


class IllegalTransition(Exception):
    """A move the machine does not allow (an HTTP 409)."""

    def __init__(self, machine: StateMachine, current: str | None, target: str, detail: str | None = None) -> None:
        self.machine = machine
        self.current = current
        self.target = target
        shown = current if current is not None else machine.initial_label
        message = detail or f"The {machine.noun} is {shown}: it cannot become {target}."
        if detail is None and machine.is_final(current):
            message = f"The {machine.noun} is {shown}, which is final: it cannot become {target}."
        super().__init__(message)


@functools.lru_cache(maxsize=256)
def _guarded_update(table: Table, column: str, keys: tuple[str, ...], names: tuple[str, ...],
                    from_none: bool) -> Update:
    """The guarded ``UPDATE`` of ``advance_row`` for one shape of call, built once: its values are bound
    per execution (``key_*``, ``set_*``, ``from_state``, ``to_state``). Building the statement for every
    call cost more than running it (issue 9: 40 % of intake's Task consumer)."""
    state = table.c[column]

    def bound(name: str, prefix: str) -> BindParameter[Any]:
        return bindparam(f"{prefix}{name}", type_=table.c[name].type)

    guard = state.is_(None) if from_none else state == bindparam("from_state", type_=state.type)
    return (
        update(table)
        .where(*(table.c[name] == bound(name, "key_") for name in keys), guard)
        .values({column: bindparam("to_state", type_=state.type),
                 **{name: bound(name, "set_") for name in names}})
    )


@dataclass(frozen=True)
class StateMachine:
    """States and the moves between them. ``None`` may stand for "no state yet" (an offer with no outcome)."""

    noun: str
    column: str
    moves: Mapping[str | None, frozenset[str]]
    # Moves from a state to itself that change something else (a Task staying "requested" while its
    # business status changes); any other same-state request is an idempotent repeat.
    self_moves: frozenset[str] = field(default_factory=frozenset)
    initial_label: str = "new"

    @classmethod
    def of(cls, noun: str, column: str, moves: Mapping[str | None, Iterable[str]], *,
           self_moves: Iterable[str] = (), initial_label: str = "new") -> StateMachine:
        return cls(noun, column, {state: frozenset(map(str, targets)) for state, targets in moves.items()},
                   frozenset(map(str, self_moves)), initial_label)

    @property
    def states(self) -> frozenset[str]:
        known = {s for s in self.moves if s is not None}
        for targets in self.moves.values():
            known |= targets
        return frozenset(known)

    def is_final(self, state: str | None) -> bool:
        return state is not None and not self.moves.get(state)

    def allows(self, current: str | None, target: str) -> bool:
        return target in self.moves.get(current, frozenset())

    def check(self, current: str | None, target: str) -> bool:
        """True for a move, False for an idempotent repeat; ``IllegalTransition`` for anything else."""
        if current == target and target not in self.self_moves:
            return False
        if self.allows(current, target):
            return True
        raise IllegalTransition(self, current, target)

    async def advance(self, session: AsyncSession, row: SQLModel, target: str, *,
                      precondition: Callable[[Any], None] | None = None, guard: Sequence[Any] = (),
                      **values: Any) -> bool:
        """Move ``row`` to ``target`` (setting ``values`` too) if it is still where we read it.

        Returns True when this call made the move (announce it), False for a repeat (announce
        nothing). The row is refreshed from the database either way. ``precondition`` (which raises
        ``IllegalTransition``) and ``guard`` (the same rule as SQL conditions) hold another column
        still, such as an offer that must stay accepted while its outcome moves. A value may be a
        function of the row as last read (a list to append to).
        """
        table = type(row)
        key = table.__table__.primary_key.columns.values()  # type: ignore[attr-defined]
        for _ in range(MAX_ATTEMPTS):
            if precondition is not None:
                precondition(row)
            current = getattr(row, self.column)
            if not self.check(current, target):
                return False
            state = getattr(table, self.column)
            statement = (
                update(table)
                .where(*(column == getattr(row, column.key) for column in key), *guard)
                .where(state == current if current is not None else state.is_(None))
                .values({self.column: target, **{k: v(row) if callable(v) else v for k, v in values.items()}})
            )
            result = await session.exec(statement)  # type: ignore[call-overload]
            await session.refresh(row)
            if result.rowcount == 1:
                return True
        raise IllegalTransition(self, getattr(row, self.column), target,
                                f"The {self.noun} keeps changing under this request; retry it.")

    async def advance_row(self, connection: AsyncConnection, table: Table, key: Mapping[str, Any],
                          current: str | None, target: str, **values: Any) -> bool:
        """``advance`` for a row read with Core (its key and its state as read), with no ORM object to
        load and refresh: one guarded ``UPDATE`` per attempt, and only the state read again when
        another writer moved the row meanwhile. Returns as ``advance`` does; ``values`` are plain."""
        keys, names = tuple(key), tuple(values)
        params = {**{f"key_{name}": value for name, value in key.items()},
                  **{f"set_{name}": value for name, value in values.items()}, "to_state": target}
        for _ in range(MAX_ATTEMPTS):
            if not self.check(current, target):
                return False
            statement = _guarded_update(table, self.column, keys, names, current is None)
            result = await connection.execute(statement, {**params, "from_state": current})
            if result.rowcount == 1:
                return True
            state = table.c[self.column]
            where = [table.c[name] == value for name, value in key.items()]
            current = (await connection.execute(select(state).where(*where))).scalar_one()
        raise IllegalTransition(self, current, target, f"The {self.noun} keeps changing under this request; retry it.")
