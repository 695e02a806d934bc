"""UserServiceClient over respx: the contract's status codes, both register shapes, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from app.user_client import UserServiceClient, UserServiceError

BASE = "http://users.test"
KEY = "users-api-key-123"
USER: dict[str, Any] = {
    "id": "0b6f4c1e-1111-2222-3333-444455556666",
    "telegram_id": 42,
    "full_name": "Ann Lee",
}
CHAT = {"id": 42, "first_name": "Ann", "last_name": "Lee", "type": "private"}


@pytest.fixture
async def client() -> AsyncIterator[UserServiceClient]:
    async with httpx.AsyncClient() as http:
        yield UserServiceClient(http, BASE, api_key=KEY, timeout=5)


def body_of(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


@respx.mock
async def test_get_user_found_and_api_key_sent(client: UserServiceClient) -> None:
    route = respx.get(f"{BASE}/api/users/by-telegram/42").mock(
        return_value=httpx.Response(200, json=USER)
    )
    assert await client.get_user_by_telegram(42) == USER
    assert route.calls.last.request.headers["X-API-Key"] == KEY


@respx.mock
async def test_no_api_key_header_when_unset() -> None:
    route = respx.get(f"{BASE}/api/users/by-telegram/42").mock(
        return_value=httpx.Response(404, json={"detail": "user not found"})
    )
    async with httpx.AsyncClient() as http:
        assert await UserServiceClient(http, BASE + "/").get_user_by_telegram(42) is None
    assert "X-API-Key" not in route.calls.last.request.headers


@pytest.mark.parametrize(
    ("status", "retryable"),
    # 401: the service refuses *our key* (a misconfiguration), not this request: an outage.
    [(500, True), (503, True), (429, True), (408, True), (401, True), (422, False)],
)
@respx.mock
async def test_get_user_errors(client: UserServiceClient, status: int, retryable: bool) -> None:
    respx.get(f"{BASE}/api/users/by-telegram/42").mock(
        return_value=httpx.Response(status, json={"detail": "nope"})
    )
    with pytest.raises(UserServiceError) as info:
        await client.get_user_by_telegram(42)
    err = info.value
    assert (err.status, err.retryable, err.body) == (status, retryable, {"detail": "nope"})
    assert str(err) == f"User Service get_user_by_telegram failed: HTTP {status}"


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.ConnectTimeout("x")]
)
@respx.mock
async def test_network_errors_are_retryable(client: UserServiceClient, exc: Exception) -> None:
    respx.get(f"{BASE}/api/users/by-telegram/42").mock(side_effect=exc)
    with pytest.raises(UserServiceError) as info:
        await client.get_user_by_telegram(42)
    err = info.value
    assert err.status is None and err.retryable and type(exc).__name__ in str(err)
    assert KEY not in str(err) and err.__cause__ is None


@respx.mock
async def test_200_with_html_is_an_error(client: UserServiceClient) -> None:
    respx.get(f"{BASE}/api/users/by-telegram/42").mock(
        return_value=httpx.Response(200, text="<html>proxy</html>")
    )
    with pytest.raises(UserServiceError) as info:
        await client.get_user_by_telegram(42)
    assert info.value.retryable and info.value.body == "<html>proxy</html>"


@respx.mock
async def test_register_direct_user(client: UserServiceClient) -> None:
    route = respx.post(f"{BASE}/api/users/register").mock(
        return_value=httpx.Response(201, json=USER)
    )
    assert await client.register_user_from_telegram(42, CHAT) == USER
    assert body_of(route) == {
        "telegram_id": 42,
        "phone": None,
        "full_name": "Ann Lee",
        "email": None,
    }
    assert route.calls.last.request.headers["X-API-Key"] == KEY


@respx.mock
async def test_register_message_and_user_shape(client: UserServiceClient) -> None:
    respx.post(f"{BASE}/api/users/register").mock(
        return_value=httpx.Response(200, json={"message": "created", "user": USER})
    )
    assert await client.register_user_from_telegram(42, CHAT) == USER


@respx.mock
async def test_register_409_with_user_in_body(client: UserServiceClient) -> None:
    respx.post(f"{BASE}/api/users/register").mock(
        return_value=httpx.Response(409, json={"detail": "already registered", "user": USER})
    )
    lookup = respx.get(f"{BASE}/api/users/by-telegram/42")
    assert await client.register_user_from_telegram(42, CHAT) == USER
    assert not lookup.called


@pytest.mark.parametrize(
    ("status", "body"),
    [(409, {"detail": "conflict"}), (400, {"detail": "User already registered"})],
)
@respx.mock
async def test_register_already_registered_fetches(
    client: UserServiceClient, status: int, body: dict[str, Any]
) -> None:
    respx.post(f"{BASE}/api/users/register").mock(return_value=httpx.Response(status, json=body))
    respx.get(f"{BASE}/api/users/by-telegram/42").mock(return_value=httpx.Response(200, json=USER))
    assert await client.register_user_from_telegram(42, CHAT) == USER


@respx.mock
async def test_register_conflict_but_not_found(client: UserServiceClient) -> None:
    respx.post(f"{BASE}/api/users/register").mock(return_value=httpx.Response(409, json={}))
    respx.get(f"{BASE}/api/users/by-telegram/42").mock(return_value=httpx.Response(404))
    with pytest.raises(UserServiceError) as info:
        await client.register_user_from_telegram(42, CHAT)
    assert info.value.retryable


@respx.mock
async def test_register_other_400_and_500(client: UserServiceClient) -> None:
    route = respx.post(f"{BASE}/api/users/register")
    route.mock(return_value=httpx.Response(400, json={"detail": "telegram_id must be positive"}))
    with pytest.raises(UserServiceError) as info:
        await client.register_user_from_telegram(42, CHAT)
    assert info.value.status == 400 and not info.value.retryable
    route.mock(return_value=httpx.Response(500, text="boom"))
    with pytest.raises(UserServiceError) as info:
        await client.register_user_from_telegram(42, CHAT)
    assert info.value.retryable
    route.mock(return_value=httpx.Response(201, json={"message": "ok"}))
    with pytest.raises(UserServiceError, match="no user id"):
        await client.register_user_from_telegram(42, CHAT)


@respx.mock
async def test_register_name_fallbacks(client: UserServiceClient) -> None:
    route = respx.post(f"{BASE}/api/users/register").mock(
        return_value=httpx.Response(201, json=USER)
    )
    await client.register_user_from_telegram(7, {"id": 7, "username": "ann"})
    assert body_of(route)["full_name"] == "@ann"
    await client.register_user_from_telegram(7, {"id": 7})
    assert body_of(route)["full_name"] == "Telegram user 7"


@respx.mock
async def test_log_interaction_payload(client: UserServiceClient) -> None:
    row = {"id": 1, "user_id": USER["id"], "direction": "in"}
    route = respx.post(f"{BASE}/api/interactions").mock(return_value=httpx.Response(201, json=row))
    raw = {"update_id": 1, "message": {"text": "hi"}}
    assert await client.log_interaction(USER["id"], "hi", "in", 77, raw) == row
    assert body_of(route) == {
        "user_id": USER["id"],
        "telegram_message_id": 77,
        "direction": "in",
        "message_text": "hi",
        "metadata": raw,  # as is: no {"raw": ...} wrapper
    }
    route.mock(return_value=httpx.Response(200, json=row))  # a replay: the existing row
    assert await client.log_interaction(USER["id"], "hi", chat_id=-100) == row
    assert body_of(route)["chat_id"] == -100 and body_of(route)["metadata"] is None


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (422, False), (503, True)])
@respx.mock
async def test_log_interaction_errors(
    client: UserServiceClient, status: int, retryable: bool
) -> None:
    respx.post(f"{BASE}/api/interactions").mock(return_value=httpx.Response(status, json={}))
    with pytest.raises(UserServiceError) as info:
        await client.log_interaction(USER["id"], "hi")
    assert info.value.status == status and info.value.retryable is retryable


@respx.mock
async def test_get_interactions(client: UserServiceClient) -> None:
    rows = [{"id": 3}, {"id": 2}, {"id": 1}]
    route = respx.get(f"{BASE}/api/interactions/{USER['id']}").mock(
        return_value=httpx.Response(200, json=rows)
    )
    assert await client.get_interactions(USER["id"], limit=3) == rows
    assert route.calls.last.request.url.params["limit"] == "3"
    route.mock(return_value=httpx.Response(200, json={"items": rows}))
    assert await client.get_interactions(USER["id"]) == rows
    route.mock(return_value=httpx.Response(404, json={"detail": "user not found"}))
    with pytest.raises(UserServiceError) as info:
        await client.get_interactions(USER["id"])
    assert info.value.status == 404
    route.mock(return_value=httpx.Response(200, json={"weird": True}))
    with pytest.raises(UserServiceError):
        await client.get_interactions(USER["id"])


@respx.mock
async def test_interaction_exists_checks_rows_itself(client: UserServiceClient) -> None:
    route = respx.get(f"{BASE}/api/interactions/{USER['id']}")
    route.mock(
        return_value=httpx.Response(200, json=[{"id": 1, "telegram_message_id": 77, "chat_id": 5}])
    )
    assert await client.interaction_exists_by_telegram_message_id(USER["id"], 77)
    params = route.calls.last.request.url.params
    assert params["telegram_message_id"] == "77" and params["limit"] == "50"
    assert await client.interaction_exists_by_telegram_message_id(USER["id"], 77, chat_id=5)
    assert route.calls.last.request.url.params["chat_id"] == "5"
    # Same message id in another chat is another message.
    assert not await client.interaction_exists_by_telegram_message_id(USER["id"], 77, chat_id=6)
    # A service that ignores the filter returns its latest rows: not a match.
    route.mock(
        return_value=httpx.Response(200, json=[{"id": 9, "telegram_message_id": 78}, {"id": 8}])
    )
    assert not await client.interaction_exists_by_telegram_message_id(USER["id"], 77)
    # Rows without chat_id (an older service) match on the message id alone.
    route.mock(return_value=httpx.Response(200, json=[{"telegram_message_id": 77}]))
    assert await client.interaction_exists_by_telegram_message_id(USER["id"], 77, chat_id=6)
    route.mock(return_value=httpx.Response(200, json=[]))
    assert not await client.interaction_exists_by_telegram_message_id(USER["id"], 77)
    route.mock(return_value=httpx.Response(404, json={}))
    assert not await client.interaction_exists_by_telegram_message_id(USER["id"], 77)
    route.mock(return_value=httpx.Response(500, json={}))
    with pytest.raises(UserServiceError):
        await client.interaction_exists_by_telegram_message_id(USER["id"], 77)
