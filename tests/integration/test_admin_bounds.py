"""The admin API never answers 500 to what is stored or typed (issue 14).

- A stored payload nested hundreds of levels deep (valid JSON, accepted by the webhook) is
  listed by `GET /admin/dead` and `GET /admin/retry-queue`: FastAPI's encoder and pydantic's
  serializer recurse per level and gave up (a 500) from about 255 levels.
- Path and query values out of range, or digits `int()` does not take although
  `str.isdigit()` says yes ("²"), are a 4xx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.storage.states import InboxState, RetryState
from app.storage.tables import inbox, storage_retry
from tests.integration.test_webhook import Client, running

ADMIN = {"X-Admin-Token": "admin-token"}


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Client]:
    async with running(f"sqlite:///{tmp_path / 'gw.db'}") as c:
        yield c


async def test_deeply_nested_stored_payloads_are_listed_not_500(lite: Client) -> None:
    gateway = lite.app.state.gateway
    for update_id, depth in ((1, 300), (2, 600)):
        update = {
            "update_id": update_id,
            "message": {"chat": {"id": 7}, "text": "x", "deep": nested(depth)},
        }
        assert (await lite.post(json.dumps(update))).status_code == 200
    for depth in (300, 600):
        await gateway.retry_queue.enqueue(
            {"user_id": "u1", "message_text": "x", "metadata": {"deep": nested(depth)}}
        )
    # Deeper than any JSON parser takes: stored by someone else, shown as the stored text.
    deepest = "[" * 100_000 + "]" * 100_000
    async with gateway.engine.begin() as conn:
        await conn.execute(
            inbox.update().values(state=InboxState.DEAD, progress=json.dumps(nested(400)))
        )
        await conn.execute(storage_retry.update().values(state=RetryState.DEAD))
        await conn.execute(
            text("UPDATE inbox SET payload = :p WHERE update_id = 2"), {"p": deepest}
        )

    dead = await lite.http.get("/admin/dead", headers=ADMIN)
    assert dead.status_code == 200, dead.text
    items = dead.json()["items"]
    assert [i["update_id"] for i in items] == [1, 2]
    assert isinstance(items[0]["payload"], str)  # too deep to show as JSON: the stored text
    assert json.loads(items[0]["payload"])["update_id"] == 1
    assert items[1]["payload"] == deepest

    queue = await lite.http.get("/admin/retry-queue", headers=ADMIN)
    assert queue.status_code == 200, queue.text
    assert queue.json()["dead"] == 2 and len(queue.json()["items"]) == 2


async def test_ordinary_payloads_are_still_shown_as_json(lite: Client) -> None:
    update = {"update_id": 5, "message": {"chat": {"id": 7}, "text": "hi"}}
    assert (await lite.post(json.dumps(update))).status_code == 200
    async with lite.app.state.gateway.engine.begin() as conn:
        await conn.execute(inbox.update().values(state=InboxState.DEAD))
    [item] = (await lite.http.get("/admin/dead", headers=ADMIN)).json()["items"]
    assert item["payload"] == update


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/dead/²/retry"),
        ("POST", "/admin/dead/-1/retry"),
        ("POST", "/admin/dead/9223372036854775808/retry"),
        ("POST", "/admin/dead/99999999999999999999999999/retry"),
        ("POST", "/admin/retry-queue/²/retry"),
        ("POST", "/admin/retry-queue/9223372036854775808/retry"),
        ("POST", "/admin/delivery/resend/²"),
        ("POST", "/admin/delivery/resend/job:²"),
        ("POST", "/admin/delivery/resend/part:²"),
        ("POST", "/admin/delivery/resend/part:9223372036854775808"),
        ("POST", "/admin/delivery/resend/99999999999999999999999999"),
        ("POST", "/admin/delivery/chats/²/active"),
        ("POST", "/admin/delivery/chats/9223372036854775808/active"),
        ("GET", "/admin/dead?limit=²"),
        ("GET", "/admin/retry-queue?limit=100000"),
        ("GET", "/admin/delivery/parked?limit=0"),
    ],
)
async def test_out_of_range_and_odd_digits_are_4xx(lite: Client, method: str, path: str) -> None:
    r = await lite.http.request(method, path, headers=ADMIN)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
