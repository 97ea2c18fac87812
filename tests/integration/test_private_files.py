"""Files holding Pathways' data are its owner's alone (issue 13): SQLite databases and their -wal/-shm
files 0600, the data directory 0700, the development secrets 0600, whatever the process's umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from services.launcher import load_or_create_secrets
from services.router.settings import RouterSettings
from shared.db import Database


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual default (files 0644, directories 0755): what must not decide who reads the data."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_sqlite_database_and_its_wal_and_shm_files_are_created_0600(database_url: str, tmp_path: Path) -> None:
    database = Database(database_url, [])
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE case_note (id INTEGER PRIMARY KEY, body TEXT)"))
            await conn.execute(text("INSERT INTO case_note (body) VALUES ('synthetic')"))
        files = sorted(tmp_path.glob("test.db*"))
        assert [f.name for f in files] == ["test.db", "test.db-shm", "test.db-wal"]  # WAL mode, open
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await database.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_world_readable_database_from_an_older_release_is_narrowed(database_url: str, tmp_path: Path) -> None:
    for name in ("test.db", "test.db-wal", "test.db-shm"):
        (tmp_path / name).touch(mode=0o644)
        (tmp_path / name).chmod(0o644)
    database = Database(database_url, [])
    await database.dispose()
    assert {p.name: mode(p) for p in tmp_path.glob("test.db*")} == {
        "test.db": 0o600, "test.db-wal": 0o600, "test.db-shm": 0o600}


def test_the_data_directory_is_created_0700_and_an_open_one_narrowed(tmp_path: Path) -> None:
    settings = RouterSettings(data_dir=tmp_path / "fresh" / ".data", database_url="")
    assert settings.resolved_database_url().endswith("/fresh/.data/router.db")
    assert mode(tmp_path / "fresh" / ".data") == 0o700
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    RouterSettings(data_dir=existing, database_url="").resolved_database_url()
    assert mode(existing) == 0o700


def test_the_development_secrets_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    secrets = tmp_path / ".data" / "secrets.env"
    load_or_create_secrets(secrets)
    assert mode(secrets) == 0o600 and mode(secrets.parent) == 0o700
