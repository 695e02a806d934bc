"""The webhook's answers, in-process (the app with its lifespan, real SQLite/PostgreSQL inbox).

Processing is disabled here (`PROCESSING_ENABLED=false`): these tests are about what the
webhook stores and answers, not about what happens next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from app.utils import HANDLED_KINDS

SECRET = "s3cret-Token_1"
SAMPLES = [
    json.loads(line)
    for line in (Path(__file__).parents[1] / "data/telegram/updates.jsonl").read_text().splitlines()
]
HANDLED = set(HANDLED_KINDS)


def make_settings(database_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "BOT_TOKEN": "123:abc",
        "USER_SERVICE_BASE": "http://127.0.0.1:9",
        "WEBHOOK_SECRET_TOKEN": SECRET,
        "DATABASE_URL": database_url,
        "PROCESSING_ENABLED": False,
        "ADMIN_TOKEN": "admin-token",
        "MAX_BODY_BYTES": 4096,
        **extra,
    }
    return Settings(_env_file=None, **values)


class Client:
    def __init__(self, app: Any, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http

    async def post(self, body: bytes | str, secret: str | None = SECRET) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        content = body.encode() if isinstance(body, str) else body
        return await self.http.post("/webhook/telegram", content=content, headers=headers)

    async def stored(self) -> list[int]:
        gw = self.app.state.gateway
        async with gw.engine.connect() as conn:
            rows = await conn.execute(text("SELECT update_id FROM inbox ORDER BY seq"))
            return [r[0] for r in rows]


@contextlib.asynccontextmanager
async def running(database_url: str) -> AsyncIterator[Client]:
    app = create_app(make_settings(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield Client(app, http)


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    """The gateway on SQLite and on PostgreSQL: for what touches storage."""
    async with running(database_url) as c:
        yield c


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Client]:
    """The gateway on SQLite only: for input-validation cases that never reach storage."""
    async with running(f"sqlite:///{tmp_path / 'gw.db'}") as c:
        yield c


def message(update_id: int, text: str = "hi") -> str:
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": 1,
                "date": 1,
                "chat": {"id": 7, "type": "private"},
                "from": {"id": 7, "is_bot": False, "first_name": "A"},
                "text": text,
            },
        }
    )


async def test_valid_update_is_stored_and_acked(client: Client) -> None:
    r = await client.post(message(100))
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert await client.stored() == [100]


async def test_redelivery_is_stored_once(client: Client) -> None:
    for _ in range(3):
        assert (await client.post(message(101))).status_code == 200
    assert await client.stored() == [101]


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1]])
async def test_wrong_secret_is_403_and_nothing_stored(lite: Client, secret: str | None) -> None:
    r = await lite.post(message(102), secret=secret)
    assert r.status_code == 403
    assert await lite.stored() == []


@pytest.mark.parametrize("body", ["{", "not json", '{"update_id": 1,}', "\xff", ""])
async def test_malformed_json_is_400(lite: Client, body: str) -> None:
    raw = b"\xff\xfe" if body == "\xff" else body.encode()
    r = await lite.post(raw)
    assert r.status_code == 400
    assert await lite.stored() == []


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        "42",
        '"text"',
        "null",
        "{}",
        '{"update_id": "7", "message": {}}',
        '{"update_id": -1, "message": {"chat": {"id": 1}}}',
        '{"update_id": 5, "message": "nope"}',
        '{"update_id": 5, "message": {"text": "no chat"}}',
        '{"update_id": 6, "inline_query": {"id": "1", "from": {"id": 1}, "query": "q"}}',
        '{"update_id": 7, "some_future_kind": {"x": 1}}',
    ],
)
async def test_non_updates_and_unknown_kinds_are_200_and_ignored(lite: Client, body: str) -> None:
    r = await lite.post(body)
    assert r.status_code == 200
    assert await lite.stored() == []


async def test_too_large_is_413(lite: Client) -> None:
    r = await lite.post(message(103, "x" * 5000))
    assert r.status_code == 413
    assert await lite.stored() == []


async def test_every_sample_is_answered_200_and_handled_kinds_stored(client: Client) -> None:
    expected = []
    for sample in SAMPLES:
        update = sample["update"]
        body = json.dumps(update)
        if len(body) > 4096:
            continue
        r = await client.post(body)
        assert r.status_code == 200, (sample["kind"], r.text)
        if HANDLED & update.keys():
            expected.append(update["update_id"])
    assert sorted(await client.stored()) == sorted(expected)
    assert len(expected) > 40


async def test_database_failure_is_503_never_200(client: Client) -> None:
    gw = client.app.state.gateway
    async with gw.engine.begin() as conn:
        await conn.execute(text("DROP TABLE inbox"))
    r = await client.post(message(104))
    assert r.status_code == 503
    # Readiness is about the database answering; health is about the process.
    assert (await client.http.get("/health")).status_code == 200


async def test_health_ready_metrics(client: Client) -> None:
    assert (await client.http.get("/health")).json() == {"status": "ok"}
    assert (await client.http.get("/ready")).status_code == 200
    await client.post(message(105))
    metrics = (await client.http.get("/metrics")).text
    assert 'gateway_webhook_requests_total{outcome="stored"} 1.0' in metrics


async def test_admin_requires_token(lite: Client) -> None:
    assert (await lite.http.post("/admin/flush-retries")).status_code == 401
    r = await lite.http.post("/admin/flush-retries", headers={"X-Admin-Token": "nope"})
    assert r.status_code == 403
    r = await lite.http.post("/admin/flush-retries", headers={"X-Admin-Token": "admin-token"})
    assert r.status_code == 200 and r.json() == {"flushed": 0, "remaining": 0}


async def test_postgres_gone_means_not_ready_and_503() -> None:
    """Kill the database under a running gateway: /ready and the webhook must say so."""
    from tests.support.pg import _admin, temp_database

    with temp_database("gone") as url:
        app = create_app(make_settings(url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                client = Client(app, http)
                assert (await http.get("/ready")).status_code == 200
                name = url.rsplit("/", 1)[1]
                _admin(f'DROP DATABASE "{name}" WITH (FORCE)')
                assert (await http.get("/ready")).status_code == 503
                assert (await client.post(message(106))).status_code == 503
                assert (await http.get("/health")).status_code == 200


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=12), inner, max_size=4)
            ),
            max_leaves=15,
        ).map(json.dumps),
        st.fixed_dictionaries(
            {
                "update_id": st.integers(min_value=0, max_value=2**40),
                "message": st.dictionaries(
                    st.sampled_from(["chat", "text", "from", "message_id"]),
                    st.integers()
                    | st.text(max_size=5)
                    | st.fixed_dictionaries({"id": st.integers()}),
                    max_size=4,
                ),
            }
        ).map(json.dumps),
    )
)
async def test_no_input_makes_a_500(lite: Client, body: str | bytes) -> None:
    r = await lite.post(body)
    assert r.status_code in (200, 400, 413), r.text


async def test_update_id_beyond_bigint_does_not_fail_its_batch_neighbours(client: Client) -> None:
    """An update_id the inbox column cannot hold (2^63 and up) is ignored (200), and the
    updates committed in the same group commit are stored (issue 14)."""
    ids = [300, 2**63, 301, 2**64, 302, 2**63 - 1]
    answers = await asyncio.gather(*(client.post(message(i)) for i in ids))
    assert [r.status_code for r in answers] == [200] * len(ids)
    assert sorted(await client.stored()) == [300, 301, 302, 2**63 - 1]
