"""The gateway's periodic prune forgets long button data after its retention (issue 14).

Every reply with a button whose data is over Telegram's 64 bytes adds a `callback_data` row;
without a retention the table only grows. `Gateway.prune` (run by the housekeeping loop) drops
rows older than `CALLBACK_DATA_RETENTION_DAYS`, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from app.config import ConfigError, Settings, load_settings
from app.gateway import Gateway
from app.storage.engine import now
from app.storage.migrate import upgrade_to_head
from app.storage.tables import callback_data

DAY = 86400.0


def make_settings(database_url: str, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,
        BOT_TOKEN="123:abc",
        USER_SERVICE_BASE="http://127.0.0.1:9",
        DATABASE_URL=database_url,
        **extra,
    )


async def test_old_button_data_is_pruned_recent_kept(database_url: str) -> None:
    gateway = Gateway(make_settings(database_url, CALLBACK_DATA_RETENTION_DAYS=7))
    try:
        await upgrade_to_head(gateway.engine)
        store = gateway.callbacks
        old, fresh = "old " * 30, "fresh " * 30
        old_key, fresh_key = await store.put(old), await store.put(fresh)
        async with gateway.engine.begin() as conn:
            await conn.execute(
                update(callback_data)
                .where(callback_data.c.key == old_key)
                .values(created_at=now() - 8 * DAY)
            )
        pruned = await gateway.prune()
        assert pruned["callback_data"] == 1
        assert await store.get(old_key) is None
        assert await store.get(fresh_key) == fresh
        assert (await gateway.prune())["callback_data"] == 0
    finally:
        for http in (gateway.telegram_http, gateway.users_http, gateway.agent_http):
            await http.aclose()
        await gateway.engine.dispose()


def test_retention_default_and_bounds() -> None:
    base = {"BOT_TOKEN": "123:abc", "USER_SERVICE_BASE": "http://127.0.0.1:9"}
    assert load_settings(_env_file=None, **base).CALLBACK_DATA_RETENTION_DAYS == 30
    for bad in ("0", "-1", "nope"):
        with pytest.raises(ConfigError, match="CALLBACK_DATA_RETENTION_DAYS"):
            load_settings(_env_file=None, CALLBACK_DATA_RETENTION_DAYS=bad, **base)
