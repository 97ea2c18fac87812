"""A pooled PostgreSQL connection is checked before use only when it has sat idle (issue 9).

SQLAlchemy's ``pool_pre_ping`` checks every connection at every checkout, and with asyncpg its check is
three round trips (``BEGIN``, an empty query, ``ROLLBACK``): as many as a short transaction's own, for every
transaction of every service. A connection that was in use a moment ago is as good as its last statement
found it; one that sat in the pool is the one a database restart or failover, or a firewall dropping idle
connections, leaves dead. So a connection is checked only when it comes out of the pool after
``IDLE_SECONDS`` or more; a dead one is replaced before anyone uses it (SQLAlchemy's pessimistic disconnect
handling: ``DisconnectionError`` from a checkout handler makes the pool connect afresh).

What a connection used within the last few seconds meets, should the server have gone meanwhile, is an
error on its first statement: SQLAlchemy then discards every connection older than that (the pool is
invalidated), the request answers 503 with ``Retry-After`` and a consumer's event is redelivered, as for
any failure of the database mid-transaction, which no check before use can prevent either.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

IDLE_SECONDS = 5.0
# On a pooled connection's record: when it was last given back to the pool (monotonic seconds).
_CHECKED_IN_AT = "pathways_checked_in_at"


def ping_when_idle(engine: Engine, idle_seconds: float | None = None) -> None:
    """Check each connection ``engine``'s pool gives out that has been idle ``idle_seconds`` (by default
    ``IDLE_SECONDS``) or more."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_CHECKED_IN_AT, None)
        limit = IDLE_SECONDS if idle_seconds is None else idle_seconds
        if since is None or time.monotonic() - since < limit:
            return  # new, or in use a moment ago
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise exc.DisconnectionError("a pooled connection no longer answers") from error
