"""Fixtures: a real User Service process per backend, shared by the contract suite.

`service` is parametrized over SQLite and PostgreSQL and session-scoped, so each backend costs
one process start. Tests keep out of each other's way by using fresh random telegram ids.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.support.pg import temp_database
from tests.support.users_service import users_service_process
from users_service.app import create_app
from users_service.config import Settings, async_database_url
from users_service.db import make_engine

API_KEY = "test-key-not-secret"


@dataclass(frozen=True)
class Service:
    backend: str
    url: str
    database_url: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    async def scalar(self, sql: str, **params: Any) -> Any:
        """Ask the service's database directly (row counts the API cannot be trusted to give)."""
        engine = make_engine(async_database_url(self.database_url))
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text(sql), params)).scalar()
        finally:
            await engine.dispose()


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    if request.param == "sqlite":
        db = tmp_path_factory.mktemp("users-service") / "users.db"
        url = f"sqlite:///{db}"
        with users_service_process(url, API_KEY) as proc:
            yield Service("sqlite", proc.url, url, API_KEY)
    else:
        with temp_database("users_svc") as url, users_service_process(url, API_KEY) as proc:
            yield Service("postgres", proc.url, url, API_KEY)


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    # Generous timeout: CI machines can be slow, and a timeout would only hide the real answer.
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=60) as c:
        yield c


@pytest.fixture
async def aclient(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(
        base_url=service.url, headers=service.headers, timeout=60, limits=limits
    ) as c:
        yield c


def new_telegram_id() -> int:
    return random.randint(10**9, 2**62)


@pytest.fixture
def user(client: httpx.Client) -> dict[str, Any]:
    """A freshly registered user."""
    r = client.post(
        "/api/users/register", json={"telegram_id": new_telegram_id(), "full_name": "T"}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process (lifespan included, so migrations run) behind httpx's ASGI transport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://users.test") as c:
            yield c
