"""Notify's schema history: the tables it owns and its Alembic revisions (the other files here).

How to add a revision: docs/operations.md, "Upgrading (migrations)".
"""

from pathlib import Path

from services.notify import store
from shared.migrations import ServiceMigrations

MIGRATIONS = ServiceMigrations("notify", tables=store.TABLES, versions=Path(__file__).parent)
