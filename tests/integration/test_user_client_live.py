"""`UserServiceClient` against the real reference User Service (a uvicorn process, real HTTP).

Both sides of the contract in DESIGN.md are checked against each other: the status codes the
client interprets are the ones the service really sends.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.errors import Verdict, classify
from app.user_client import UserServiceClient, UserServiceError
from tests.support.servers import ServerProcess
from tests.support.users_service import users_service_process

pytestmark = pytest.mark.e2e

API_KEY = "live-test-key-not-secret"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db: Path = tmp_path_factory.mktemp("users-live") / "users.db"
    with users_service_process(f"sqlite:///{db}", API_KEY) as proc:
        yield proc


@pytest.fixture
async def client(service: ServerProcess) -> AsyncIterator[UserServiceClient]:
    async with httpx.AsyncClient() as http:
        yield UserServiceClient(http, service.url, api_key=API_KEY, timeout=10)


def new_telegram_id() -> int:
    return random.randint(10**9, 10**12)


def sender(telegram_id: int) -> dict[str, object]:
    return {"id": telegram_id, "is_bot": False, "first_name": "Linh", "last_name": "Nguyễn"}


async def test_new_user_then_register_then_fetch(client: UserServiceClient) -> None:
    tid = new_telegram_id()
    assert await client.get_user_by_telegram(tid) is None
    user = await client.register_user_from_telegram(tid, sender(tid))
    assert user["id"] and user["telegram_id"] == tid and user["full_name"] == "Linh Nguyễn"
    fetched = await client.get_user_by_telegram(tid)
    assert fetched is not None and fetched["id"] == user["id"]


async def test_register_twice_returns_the_same_user(client: UserServiceClient) -> None:
    tid = new_telegram_id()
    first = await client.register_user_from_telegram(tid, sender(tid))
    second = await client.register_user_from_telegram(tid, {"id": tid, "username": "linh"})
    assert second["id"] == first["id"]


async def test_interactions_in_out_replay_exists_and_order(client: UserServiceClient) -> None:
    tid = new_telegram_id()
    user = await client.register_user_from_telegram(tid, sender(tid))
    uid = str(user["id"])
    raw = {"update_id": 1, "message": {"message_id": 10, "text": "Xin chào"}}

    row_in = await client.log_interaction(uid, "Xin chào", "in", 10, raw, chat_id=tid)
    assert row_in["direction"] == "in" and row_in["telegram_message_id"] == 10
    assert row_in["metadata"] == raw  # stored as is, no {"raw": ...} wrapper
    replay = await client.log_interaction(uid, "Xin chào", "in", 10, raw, chat_id=tid)
    assert replay["id"] == row_in["id"]  # a replay is not an error and writes nothing

    row_out = await client.log_interaction(
        uid, "Chào bạn!", "out", 11, {"actions": [], "reply_to": 10}, chat_id=tid
    )
    assert row_out["direction"] == "out"

    rows = await client.get_interactions(uid, limit=20)
    assert [r["id"] for r in rows] == [row_out["id"], row_in["id"]]  # newest first, one "in"
    assert [r["direction"] for r in rows] == ["out", "in"]
    assert len(await client.get_interactions(uid, limit=1)) == 1

    assert await client.interaction_exists_by_telegram_message_id(uid, 10)
    assert await client.interaction_exists_by_telegram_message_id(uid, 10, chat_id=tid)
    assert not await client.interaction_exists_by_telegram_message_id(uid, 10, chat_id=tid + 1)
    assert not await client.interaction_exists_by_telegram_message_id(uid, 999)


async def test_unknown_user(client: UserServiceClient) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(UserServiceError) as info:
        await client.get_interactions(unknown)
    assert info.value.status == 404 and not info.value.retryable
    assert not await client.interaction_exists_by_telegram_message_id(unknown, 1)
    with pytest.raises(UserServiceError) as info:
        await client.log_interaction(unknown, "x")
    assert info.value.status == 404


async def test_api_key_is_required(service: ServerProcess) -> None:
    async with httpx.AsyncClient() as http:
        for key in (None, "wrong-key"):
            anonymous = UserServiceClient(http, service.url, api_key=key)
            with pytest.raises(UserServiceError) as info:
                await anonymous.get_user_by_telegram(new_telegram_id())
            err = info.value
            # Our key is refused: the service, not this request, is the problem (app.errors).
            assert err.status == 401 and classify(err) is Verdict.OUTAGE
            assert API_KEY not in str(err)


async def test_service_down_is_retryable() -> None:
    from tests.support.servers import free_port

    async with httpx.AsyncClient() as http:
        down = UserServiceClient(http, f"http://127.0.0.1:{free_port()}", api_key=API_KEY)
        with pytest.raises(UserServiceError) as info:
            await down.get_user_by_telegram(1)
    assert info.value.status is None and info.value.retryable
