"""Alembic's environment for every service: the connection, the service's models and its version table
come from ``shared.migrations`` (through ``config.attributes``), never from an ini file."""

from alembic import context

from shared.migrations import run_environment

run_environment(context)
