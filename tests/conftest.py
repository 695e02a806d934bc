"""Fixtures shared by every suite: database URLs for both backends, and test log folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import temp_database

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TEST_LOG_DIR", str(ROOT / "test-artifacts" / "logs"))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The gateway's own database, once on a SQLite file and once on a fresh PostgreSQL DB."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        with temp_database("gw") as url:
            yield url
