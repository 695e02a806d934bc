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
from app.delivery import DeliveredJob, Delivery, DeliveryConfig
from app.storage.engine import make_engine
from app.storage.migrate import create_schema
from app.telegram_client import TelegramClient
from tests.delivery.standin import StandIn
from tests.support.pg import temp_database

TOKEN = "123456:test-token-for-delivery"


def make_config(**overrides: Any) -> DeliveryConfig:
    """A `DeliveryConfig` for a fast suite; overrides by field name, in either case
    (`RATE_GLOBAL_PER_SECOND=10` or `rate_global_per_second=10`)."""
    values: dict[str, Any] = {
        "request_timeout": 2.0,
        "retry_base_delay": 0.05,
        "retry_max_delay": 0.5,
        "poll_interval": 0.2,
        "lease_seconds": 5,
        "typing_interval": 0.2,
    }
    values.update({k.lower(): v for k, v in overrides.items()})
    return DeliveryConfig(**values)


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
        lane: bool = True,
        **overrides: Any,
    ) -> Delivery:
        config = make_config(**overrides)
        http = httpx.AsyncClient()
        tg = TelegramClient(http, TOKEN, standin.base, config.request_timeout)

        def lane_telegram() -> tuple[TelegramClient, Callable[[], Awaitable[None]]]:
            lane_http = httpx.AsyncClient()
            client = TelegramClient(lane_http, TOKEN, standin.base, config.request_timeout)
            return client, lane_http.aclose

        d = Delivery(
            db_engine,
            tg,
            config,
            CollectorRegistry(),
            owner or f"test-{uuid.uuid4().hex[:6]}",
            on_delivered,
            # The send lane (production), unless a test hands in its own Telegram object.
            lane_telegram=lane_telegram if lane else None,
        )
        made.append((d, http))
        if start:
            await d.start()
        return d

    yield factory
    for d, http in made:
        await d.stop(1.0)
        await http.aclose()
