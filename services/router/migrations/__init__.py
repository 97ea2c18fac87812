"""Router's schema history: the tables it owns and its Alembic revisions (the other files here).

How to add a revision: docs/operations.md, "Upgrading (migrations)".
"""

from pathlib import Path

from services.router import store
from shared.migrations import ServiceMigrations

MIGRATIONS = ServiceMigrations("router", tables=store.TABLES, versions=Path(__file__).parent)
