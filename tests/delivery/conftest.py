"""Fixtures: a Telegram stand-in, a database (SQLite, or PostgreSQL where asked), engines."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

import app.delivery.tables  # noqa: F401  (registers the delivery tables)
from app.config import Settings
from app.db import create_schema, make_engine
from app.delivery import DeliveredJob, Delivery
from app.telegram_client import TelegramClient
from tests.delivery.standin import StandIn
from tests.support.pg import temp_database

TOKEN = "123456:test-token-for-delivery"


def make_settings(base: str, db_url: str = "sqlite:///:memory:", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "BOT_TOKEN": TOKEN,
        "USER_SERVICE_BASE": "http://127.0.0.1:9",
        "TELEGRAM_API_BASE": base,
        "DATABASE_URL": db_url,
        "REQUEST_TIMEOUT": 2.0,
        "RETRY_BASE_DELAY": 0.05,
        "RETRY_MAX_DELAY": 0.5,
        "POLL_INTERVAL": 0.2,
        "LEASE_SECONDS": 5,
        "TYPING_INTERVAL": 0.2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def standin() -> Iterator[StandIn]:
    s = StandIn().start()
    yield s
    s.stop()


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "postgres":
        with temp_database("delivery") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path}/delivery-{uuid.uuid4().hex[:6]}.db"


Factory = Callable[..., Awaitable[Delivery]]


@pytest.fixture
async def db_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url, sqlite_synchronous="NORMAL")
    await create_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def make_delivery(
    standin: StandIn, db_url: str, db_engine: AsyncEngine
) -> AsyncIterator[Factory]:
    made: list[tuple[Delivery, httpx.AsyncClient]] = []

    async def factory(
        *,
        owner: str | None = None,
        on_delivered: Callable[[DeliveredJob], Awaitable[None]] | None = None,
        start: bool = True,
        **overrides: Any,
    ) -> Delivery:
        settings = make_settings(standin.base, db_url, **overrides)
        http = httpx.AsyncClient()
        tg = TelegramClient(http, TOKEN, standin.base, settings.REQUEST_TIMEOUT)
        d = Delivery(
            db_engine,
            tg,
            settings,
            CollectorRegistry(),
            owner or f"test-{uuid.uuid4().hex[:6]}",
            on_delivered,
        )
        made.append((d, http))
        if start:
            await d.start()
        return d

    yield factory
    for d, http in made:
        await d.stop(1.0)
        await http.aclose()
