"""A new offer's webhook handed straight to this process's dispatcher when its transaction commits (issue 9).

The dispatcher's own path to a delivery is a step woken by the commit that queued it: a read of the due
deliveries, a transaction that leases them, then the POST; two more turns of the database for every offer,
on the way from the offer to its provider. Instead, the transaction that makes an offer leases its delivery
as it inserts it (``next_attempt_at`` is the end of the lease, as a step's lease sets it), when the dispatcher
has a sending slot free for it, and the row goes to the dispatcher once the transaction commits; a rollback
hands nothing over and gives the slot back.

What can go wrong is what can go wrong after a step's lease: should the process stop before the POST, the
lease runs out and any notify's step sends the delivery (at least once; receivers de-duplicate on
``webhook-id``). A delivery with no free slot, or to an endpoint ops disabled, is inserted due at once and
left to the step, as before.
"""

from __future__ import annotations

import weakref
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

# In a session's ``info``: the rows its transaction leased for hand-over, per taker.
HANDED = "notify_webhooks_handed"


class Taker(Protocol):
    """What a dispatcher offers the transactions of its service's database."""

    @property
    def lease(self) -> timedelta: ...

    def room(self) -> int:
        """Deliveries it could start sending now, less those already promised to it."""

    def promise(self, count: int) -> None:
        """``count`` leased rows are on their way (their transaction has not ended yet)."""

    def take(self, rows: list[dict[str, Any]]) -> None:
        """Promised rows whose transaction committed: send them."""

    def withdraw(self, count: int) -> None:
        """Promised rows whose transaction rolled back: they were never stored."""


# The running dispatcher of each database's engine (one per notify runtime; tests run several in a process).
_TAKERS: weakref.WeakKeyDictionary[Engine, Taker] = weakref.WeakKeyDictionary()


def register(engine: Engine, taker: Taker) -> None:
    _TAKERS[engine] = taker


def unregister(engine: Engine, taker: Taker) -> None:
    if _TAKERS.get(engine) is taker:
        del _TAKERS[engine]


def lease_for_handover(session: AsyncSession, rows: list[dict[str, Any]], now: datetime) -> int:
    """Lease the first of ``rows`` (pending deliveries about to be inserted in ``session``'s transaction) that
    the dispatcher has room for, to be handed to it at the commit; returns how many."""
    bind = session.sync_session.bind
    taker = _TAKERS.get(bind) if isinstance(bind, Engine) else None
    if taker is None or not rows:
        return 0
    count = max(0, min(taker.room(), len(rows)))
    if count:
        leased = rows[:count]
        for row in leased:
            row["next_attempt_at"] = now + taker.lease
        taker.promise(count)
        session.info.setdefault(HANDED, []).append((taker, leased))
    return count


@event.listens_for(Session, "after_commit")
def _hand_over(session: Session) -> None:
    for taker, rows in session.info.pop(HANDED, ()):
        taker.take(rows)


@event.listens_for(Session, "after_transaction_end")
def _withdraw_rolled_back(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (a commit handed everything over already)
        for taker, rows in session.info.pop(HANDED, ()):
            taker.withdraw(len(rows))
