"""Intake's schema history: the tables it owns and its Alembic revisions (the other files here).

How to add a revision: docs/operations.md, "Upgrading (migrations)".
"""

from pathlib import Path

from services.intake import closed_loop, store
from shared.migrations import ServiceMigrations

MIGRATIONS = ServiceMigrations("intake", tables=[*store.TABLES, *closed_loop.TABLES], versions=Path(__file__).parent)
