"""In-process checks of configuration, the app factory and the OpenAPI document."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from tests.support.pg import PG_ADMIN_DSN, temp_database
from tests.users_service.conftest import in_process
from users_service.config import Settings, async_database_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sqlite:///./var/users.db", "sqlite+aiosqlite:///./var/users.db"),
        ("sqlite:////abs/users.db", "sqlite+aiosqlite:////abs/users.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
    ],
)
def test_database_url_gets_the_async_driver(raw: str, expected: str) -> None:
    assert async_database_url(raw).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "not a url", ""])
def test_bad_database_url_fails_naming_the_variable(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", bad)
    with pytest.raises(ValidationError, match="database_url"):
        Settings()


def test_defaults_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("API_KEY", "")
    settings = Settings()
    assert settings.database_url == "sqlite:///./var/users.db"
    assert settings.api_key is None  # empty means "no key"

    assert settings.max_body_bytes == 1_048_576  # 1 MiB
    assert settings.max_metadata_bytes == 262_144  # 256 KiB

    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@h/db")
    monkeypatch.setenv("API_KEY", "sekrit")
    settings = Settings()
    assert "hunter2" not in repr(settings) and "sekrit" not in repr(settings)
    assert set(settings.secret_values()) == {"hunter2", "sekrit"}


def test_importing_main_needs_no_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")  # would fail if the app were built
    sys.modules.pop("users_service.main", None)
    module = importlib.import_module("users_service.main")
    with pytest.raises(SystemExit) as info:
        _ = module.app
    assert info.value.code == 2
    assert "DATABASE_URL" in capsys.readouterr().err
    with pytest.raises(AttributeError):
        _ = module.nothing_here


@pytest.fixture
async def open_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app without API_KEY, in process, on a SQLite file in a folder that does not exist."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'var' / 'users.db'}", api_key=None)
    async with in_process(settings) as client:
        yield client


async def test_without_api_key_no_header_is_needed(open_client: httpx.AsyncClient) -> None:
    r = await open_client.post("/api/users/register", json={"telegram_id": 77})
    assert r.status_code == 201
    assert (await open_client.get("/api/users/by-telegram/77")).status_code == 200


async def test_secrets_are_not_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'u.db'}", api_key="sekrit-value")
    with caplog.at_level(logging.DEBUG):
        async with in_process(settings) as client:
            await client.get("/health")
            await client.get("/api/users/by-telegram/1", headers={"X-API-Key": "wrong-guess"})
    assert "ready" in caplog.text
    assert "sekrit-value" not in caplog.text and "wrong-guess" not in caplog.text


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "users_service" and r.levelno == logging.WARNING
    ]


async def test_an_open_service_says_so_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without API_KEY anyone who reaches the port reads and writes every user's history."""
    db = f"sqlite:///{tmp_path / 'u.db'}"
    with caplog.at_level(logging.INFO, logger="users_service"):
        async with in_process(Settings(database_url=db, api_key=None)):
            pass
    (warning,) = _warnings(caplog)
    assert "API_KEY is not set" in warning and "open" in warning

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="users_service"):
        async with in_process(Settings(database_url=db, api_key="a-key-for-this-test")):
            pass
    assert _warnings(caplog) == []
    assert "api_key=required" in caplog.text


async def test_openapi_declares_the_contract(open_client: httpx.AsyncClient) -> None:
    spec = (await open_client.get("/openapi.json")).json()
    paths = spec["paths"]

    def codes(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert codes("/api/users/by-telegram/{telegram_id}", "get") >= {"200", "404", "401", "422"}
    assert codes("/api/users/register", "post") >= {"201", "409", "401", "422"}
    assert codes("/api/users/{user_id}", "get") >= {"200", "404", "401", "422"}
    assert codes("/api/interactions", "post") >= {"201", "200", "404", "401", "422"}
    assert codes("/api/interactions/{user_id}", "get") >= {"200", "404", "401", "422"}
    assert codes("/health", "get") >= {"200"}

    register_409 = paths["/api/users/register"]["post"]["responses"]["409"]
    assert register_409["content"]["application/json"]["schema"]["$ref"].endswith(
        "AlreadyRegisteredOut"
    )
    schemas = spec["components"]["schemas"]
    assert set(schemas["UserOut"]["properties"]) == {
        "id",
        "telegram_id",
        "full_name",
        "phone",
        "email",
        "created_at",
        "updated_at",
    }
    assert "metadata" in schemas["InteractionOut"]["properties"]
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    params = {p["name"] for p in paths["/api/interactions/{user_id}"]["get"]["parameters"]}
    assert params >= {"user_id", "limit", "before", "telegram_message_id"}


@pytest.mark.postgres
async def test_database_gone_is_503_not_500() -> None:
    """When the database disappears under a running service, callers get a retryable 503."""
    with temp_database("users_gone") as url:
        async with in_process(Settings(database_url=url, api_key=None)) as client:
            assert (
                await client.post("/api/users/register", json={"telegram_id": 9})
            ).status_code == 201
            await drop_database(url)
            r = await client.get("/api/users/by-telegram/9")
            assert r.status_code == 503, r.text
            assert r.json() == {"detail": "database unavailable"}


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()
