"""The one Alembic environment every service's migrations run in (see shared.migrations)."""
