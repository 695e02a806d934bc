"""The User Service contract, checked against a real process on SQLite and on PostgreSQL.

Every test here runs twice (see the `service` fixture). These are the promises the gateway's
`user_client` relies on: status codes, body shapes, idempotent registration and history writes,
also when the duplicates arrive at the same instant.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.users_service.conftest import Service, new_telegram_id

pytestmark = pytest.mark.e2e

USER_KEYS = {"id", "telegram_id", "full_name", "phone", "email", "created_at", "updated_at"}
INTERACTION_KEYS = {
    "id",
    "user_id",
    "chat_id",
    "telegram_message_id",
    "direction",
    "message_text",
    "metadata",
    "created_at",
}


def log(client: httpx.Client, user: dict[str, Any], **fields: Any) -> httpx.Response:
    body = {"user_id": user["id"], "direction": "in", "message_text": "hi", **fields}
    return client.post("/api/interactions", json=body)


# --- health and API key -------------------------------------------------------------------


def test_health_needs_no_key(service: Service) -> None:
    r = httpx.get(service.url + "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_api_calls_without_the_right_key_get_401(service: Service, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/api/users/by-telegram/1"),
        ("POST", "/api/users/register"),
        ("POST", "/api/interactions"),
        ("GET", f"/api/interactions/{uuid.uuid4()}"),
        ("GET", f"/api/users/{uuid.uuid4()}"),
    ]:
        # Even a malformed body is refused for the key first: no information before auth.
        r = httpx.request(method, service.url + path, headers=headers, content=b"{not json")
        assert r.status_code == 401, (method, path, r.text)
        assert "detail" in r.json()


def test_the_right_key_is_accepted(client: httpx.Client) -> None:
    r = client.get(f"/api/users/by-telegram/{new_telegram_id()}")
    assert r.status_code == 404  # past the key check, into the handler


# --- users ----------------------------------------------------------------------------------


def test_register_then_look_up(client: httpx.Client) -> None:
    tg = new_telegram_id()
    body = {"telegram_id": tg, "full_name": "Nguyễn Văn A", "phone": "+84 90", "email": "a@b.c"}
    r = client.post("/api/users/register", json=body)
    assert r.status_code == 201, r.text
    user = r.json()
    assert set(user) == USER_KEYS
    assert user["telegram_id"] == tg
    assert user["full_name"] == "Nguyễn Văn A"
    assert user["phone"] == "+84 90"
    assert user["email"] == "a@b.c"
    uuid.UUID(user["id"])
    assert user["created_at"].endswith("Z") or "+00:00" in user["created_at"]

    assert client.get(f"/api/users/by-telegram/{tg}").json() == user
    assert client.get(f"/api/users/{user['id']}").json() == user


def test_register_with_only_telegram_id(client: httpx.Client) -> None:
    r = client.post("/api/users/register", json={"telegram_id": new_telegram_id()})
    assert r.status_code == 201
    assert r.json()["full_name"] is None and r.json()["email"] is None


def test_unknown_users_are_404(client: httpx.Client) -> None:
    r = client.get(f"/api/users/by-telegram/{new_telegram_id()}")
    assert r.status_code == 404
    assert isinstance(r.json()["detail"], str)
    r = client.get(f"/api/users/{uuid.uuid4()}")
    assert r.status_code == 404
    assert isinstance(r.json()["detail"], str)


def test_user_id_must_be_a_uuid(client: httpx.Client) -> None:
    r = client.get("/api/users/not-a-uuid")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["path", "user_id"]


def test_second_registration_is_409_with_the_existing_user(
    client: httpx.Client, user: dict[str, Any]
) -> None:
    r = client.post(
        "/api/users/register", json={"telegram_id": user["telegram_id"], "full_name": "Other"}
    )
    assert r.status_code == 409
    body = r.json()
    assert body["message"] == "already registered"
    assert isinstance(body["detail"], str)
    assert body["user"] == user  # unchanged: a second registration never overwrites


async def test_concurrent_duplicate_registration_creates_one_user(
    service: Service, aclient: httpx.AsyncClient
) -> None:
    tg = new_telegram_id()
    responses = await asyncio.gather(
        *(
            aclient.post("/api/users/register", json={"telegram_id": tg, "full_name": f"n{i}"})
            for i in range(30)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 29, [r.text for r in responses if r.status_code >= 500]
    created = next(r.json() for r in responses if r.status_code == 201)
    assert {r.json()["user"]["id"] for r in responses if r.status_code == 409} == {created["id"]}
    count = await service.scalar("SELECT count(*) FROM users WHERE telegram_id = :tg", tg=tg)
    assert count == 1


# --- interactions -----------------------------------------------------------------------------


def test_create_interaction(client: httpx.Client, user: dict[str, Any]) -> None:
    update = {"update_id": 1, "message": {"message_id": 7, "chat": {"id": -1001}, "text": "hi"}}
    r = log(client, user, telegram_message_id=7, metadata=update)
    assert r.status_code == 201, r.text
    row = r.json()
    assert set(row) == INTERACTION_KEYS
    assert row["user_id"] == user["id"]
    assert row["chat_id"] == -1001  # derived from metadata.message.chat.id
    assert row["telegram_message_id"] == 7
    assert row["direction"] == "in"
    assert row["message_text"] == "hi"
    assert row["metadata"] == update
    assert isinstance(row["id"], int)


async def test_replay_returns_the_existing_row_with_200(
    service: Service, client: httpx.Client, user: dict[str, Any]
) -> None:
    first = log(client, user, telegram_message_id=11, message_text="first")
    assert first.status_code == 201
    again = log(client, user, telegram_message_id=11, message_text="replayed, different text")
    assert again.status_code == 200
    assert again.json() == first.json()  # first write wins, nothing changed
    count = await service.scalar(
        "SELECT count(*) FROM interactions WHERE telegram_message_id = 11 AND chat_id = :c",
        c=user["telegram_id"],
    )
    assert count == 1


def test_same_message_id_in_two_chats_is_two_rows(
    client: httpx.Client, user: dict[str, Any]
) -> None:
    a = log(client, user, telegram_message_id=5, chat_id=-100)
    b = log(client, user, telegram_message_id=5, chat_id=-200)
    c = log(client, user, telegram_message_id=5)  # private chat: chat_id = telegram_id
    assert [a.status_code, b.status_code, c.status_code] == [201, 201, 201]
    assert len({a.json()["id"], b.json()["id"], c.json()["id"]}) == 3
    assert c.json()["chat_id"] == user["telegram_id"]
    rows = client.get(f"/api/interactions/{user['id']}", params={"telegram_message_id": 5}).json()
    assert sorted(r["chat_id"] for r in rows) == sorted([-100, -200, user["telegram_id"]])


def test_chat_id_is_derived_from_metadata(client: httpx.Client, user: dict[str, Any]) -> None:
    cases = [
        ({"message": {"chat": {"id": -1}}}, -1),
        ({"edited_message": {"chat": {"id": -2}}}, -2),
        ({"channel_post": {"chat": {"id": -3}}}, -3),
        ({"callback_query": {"message": {"chat": {"id": -4}}}}, -4),
        ({"actions": [], "reply_to": 3}, user["telegram_id"]),  # outbound, no chat: private
        ({"message": {"chat": {"id": "not an int"}}}, user["telegram_id"]),
    ]
    for n, (metadata, expected) in enumerate(cases, start=100):
        r = log(client, user, telegram_message_id=n, metadata=metadata)
        assert r.status_code == 201, r.text
        assert r.json()["chat_id"] == expected, metadata
    # An explicit chat_id wins over metadata.
    r = log(
        client, user, telegram_message_id=1, chat_id=-9, metadata={"message": {"chat": {"id": -1}}}
    )
    assert r.json()["chat_id"] == -9


def test_in_and_out_rows_have_their_own_ids(client: httpx.Client, user: dict[str, Any]) -> None:
    inbound = log(client, user, telegram_message_id=20, direction="in")
    outbound = log(client, user, telegram_message_id=21, direction="out", metadata={"actions": []})
    assert inbound.status_code == outbound.status_code == 201
    assert inbound.json()["id"] != outbound.json()["id"]
    assert outbound.json()["direction"] == "out"
    # Same message id in the same chat is the same message, whatever the direction says.
    replay = log(client, user, telegram_message_id=21, direction="in")
    assert replay.status_code == 200
    assert replay.json()["id"] == outbound.json()["id"]


def test_rows_without_message_id_are_never_deduplicated(
    client: httpx.Client, user: dict[str, Any]
) -> None:
    a = log(client, user, message_text="same")
    b = log(client, user, message_text="same")
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"]
    assert a.json()["telegram_message_id"] is None
    assert a.json()["metadata"] == {}


def test_interactions_of_unknown_user_are_404(client: httpx.Client) -> None:
    ghost = {"id": str(uuid.uuid4()), "telegram_id": 1}
    r = log(client, ghost, telegram_message_id=1)
    assert r.status_code == 404
    assert isinstance(r.json()["detail"], str)
    r = client.get(f"/api/interactions/{ghost['id']}")
    assert r.status_code == 404


def test_list_is_newest_first_with_keyset_pagination(
    client: httpx.Client, user: dict[str, Any]
) -> None:
    ids = [
        log(client, user, telegram_message_id=n, message_text=f"m{n}").json()["id"]
        for n in range(1, 26)
    ]
    newest_first = ids[::-1]
    url = f"/api/interactions/{user['id']}"

    default = client.get(url).json()
    assert [r["id"] for r in default] == newest_first[:20]  # default limit is 20

    page1 = client.get(url, params={"limit": 10}).json()
    assert [r["id"] for r in page1] == newest_first[:10]
    page2 = client.get(url, params={"limit": 10, "before": page1[-1]["id"]}).json()
    assert [r["id"] for r in page2] == newest_first[10:20]
    page3 = client.get(url, params={"limit": 10, "before": page2[-1]["id"]}).json()
    assert [r["id"] for r in page3] == newest_first[20:]
    assert client.get(url, params={"before": page3[-1]["id"]}).json() == []


def test_list_only_shows_the_users_own_rows(client: httpx.Client, user: dict[str, Any]) -> None:
    other = client.post("/api/users/register", json={"telegram_id": new_telegram_id()}).json()
    log(client, other, telegram_message_id=1)
    assert client.get(f"/api/interactions/{user['id']}").json() == []


def test_telegram_message_id_filter(client: httpx.Client, user: dict[str, Any]) -> None:
    for n in (1, 2, 3):
        log(client, user, telegram_message_id=n)
    url = f"/api/interactions/{user['id']}"
    hits = client.get(url, params={"telegram_message_id": 2, "limit": 1}).json()
    assert [r["telegram_message_id"] for r in hits] == [2]
    assert client.get(url, params={"telegram_message_id": 99}).json() == []


@pytest.mark.parametrize(
    ("limit", "status"), [(0, 422), (-1, 422), (201, 422), (1, 200), (200, 200)]
)
def test_limit_is_bounded(
    client: httpx.Client, user: dict[str, Any], limit: int, status: int
) -> None:
    r = client.get(f"/api/interactions/{user['id']}", params={"limit": limit})
    assert r.status_code == status
    if status == 422:
        assert r.json()["detail"][0]["loc"] == ["query", "limit"]


def test_invalid_bodies_get_field_level_422(client: httpx.Client, user: dict[str, Any]) -> None:
    def locs(r: httpx.Response) -> set[tuple[Any, ...]]:
        assert r.status_code == 422, r.text
        return {tuple(e["loc"]) for e in r.json()["detail"]}

    assert locs(client.post("/api/users/register", json={})) == {("body", "telegram_id")}
    assert ("body", "telegram_id") in locs(
        client.post("/api/users/register", json={"telegram_id": "abc"})
    )
    assert ("body", "telegram_id") in locs(
        client.post("/api/users/register", json={"telegram_id": 2**64})
    )
    r = client.post(
        "/api/interactions",
        json={
            "user_id": "nope",
            "direction": "sideways",
            "metadata": [1],
            "telegram_message_id": 0,
        },
    )
    assert locs(r) >= {
        ("body", "user_id"),
        ("body", "direction"),
        ("body", "metadata"),
        ("body", "telegram_message_id"),
    }


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[]", b"null", b'{"telegram_id": NaN}', b"\xff\xfe", b"[" * 5000],
)
def test_malformed_json_is_4xx(client: httpx.Client, user: dict[str, Any], content: bytes) -> None:
    for path in ("/api/users/register", "/api/interactions"):
        r = client.post(path, content=content, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (path, content[:20], r.status_code, r.text)


async def test_concurrent_replays_store_one_row(
    service: Service, aclient: httpx.AsyncClient, user: dict[str, Any]
) -> None:
    body = {
        "user_id": user["id"],
        "direction": "in",
        "message_text": "once",
        "telegram_message_id": 4242,
        "metadata": {"message": {"message_id": 4242, "chat": {"id": user["telegram_id"]}}},
    }
    responses = await asyncio.gather(
        *(aclient.post("/api/interactions", json=body) for _ in range(30))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 29 + [201], [r.text for r in responses if r.status_code >= 500]
    assert len({r.json()["id"] for r in responses}) == 1
    count = await service.scalar(
        "SELECT count(*) FROM interactions WHERE telegram_message_id = 4242 AND chat_id = :c",
        c=user["telegram_id"],
    )
    assert count == 1


@pytest.mark.parametrize(
    "raw",
    [
        b'{"message_text": "nul \\u0000 byte"}',
        b'{"message_text": "lone \\ud800 surrogate"}',
        b'{"metadata": {"text": "nul \\u0000"}}',
        b'{"metadata": {"k\\u0000": 1}}',
        b'{"metadata": {"x": NaN}}',
        b'{"metadata": {"x": [Infinity]}}',
        b'{"metadata": {"x": 1e400}}',
    ],
)
def test_values_a_database_cannot_store_are_422(
    client: httpx.Client, user: dict[str, Any], raw: bytes
) -> None:
    """PostgreSQL refuses NUL in text and JSONB, and NaN in JSONB; left unchecked, a 500."""
    body = json.loads(raw)
    body = {"user_id": user["id"], "direction": "in", "telegram_message_id": 1, **body}
    content = json.dumps(body, allow_nan=True).encode()
    r = client.post(
        "/api/interactions", content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    r = client.post(
        "/api/users/register",
        content=b'{"telegram_id": 5, "full_name": "a\\u0000b"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text


async def test_a_write_is_visible_as_soon_as_it_is_answered(aclient: httpx.AsyncClient) -> None:
    """Commit before the response: the gateway's very next call must see what it just wrote.

    (Regression: the session was committed by a yield-dependency's teardown, which FastAPI runs
    after the response is sent, so a fast client sometimes got 404 for a user it had just
    registered.)
    """
    for _ in range(15):
        tg = new_telegram_id()
        r = await aclient.post("/api/users/register", json={"telegram_id": tg})
        assert r.status_code == 201
        user_id = r.json()["id"]
        r = await aclient.post(
            "/api/interactions",
            json={"user_id": user_id, "direction": "in", "telegram_message_id": 1},
        )
        assert r.status_code == 201, r.text
        r = await aclient.get(f"/api/interactions/{user_id}", params={"telegram_message_id": 1})
        assert len(r.json()) == 1, r.text
