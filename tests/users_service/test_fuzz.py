"""No input produces a 500: arbitrary bodies, path values and query strings at every endpoint.

In process against a SQLite file, so a few hundred requests take seconds. The strategies mix
plain garbage with almost-valid bodies (right keys, wild values, a real user id) so that
requests get past the first validation layer and reach the database with odd data: NaN,
huge integers, NUL characters, deep nesting.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.users_service.conftest import in_process
from users_service.config import Settings

API_KEY = "fuzz-key"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["\x00", "\ud800", "a\udfff", "in", "out", "-1", "9" * 30, "1e400"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
deep = st.integers(1, 200).map(lambda n: json.loads("[" * n + "]" * n))

FIELDS = [
    "telegram_id",
    "full_name",
    "phone",
    "email",
    "user_id",
    "direction",
    "message_text",
    "metadata",
    "telegram_message_id",
    "chat_id",
]


@pytest.fixture
async def fuzz_client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings_ = Settings(database_url=f"sqlite:///{tmp_path / 'fuzz.db'}", api_key=API_KEY)
    async with in_process(settings_) as client:
        client.headers["X-API-Key"] = API_KEY
        r = await client.post("/api/users/register", json={"telegram_id": 1})
        yield client, r.json()["id"]


def bodies(user_id: str) -> st.SearchStrategy[bytes]:
    """Mostly near-valid bodies (a real user, a valid direction) with a few fields gone wild."""
    field_values = st.one_of(json_values, deep, st.just(user_id), st.integers())
    overrides = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=3)
    metadata = st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=4),
        deep.map(lambda nested: {"deep": nested}),
    )
    near_valid = st.builds(
        lambda tg, md, ov: {
            "telegram_id": tg,
            "user_id": user_id,
            "direction": "in",
            "message_text": "x",
            "metadata": md,
            **ov,
        },
        st.integers(1, 2**63 - 1),
        metadata,
        overrides,
    )
    as_json = st.one_of(near_valid, near_valid, json_values).map(
        lambda v: json.dumps(v, allow_nan=True).encode()
    )
    return st.one_of(as_json, as_json, st.binary(max_size=64))


path_values = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.uuids().map(str),
    st.sampled_from(["", "0", "-1", "%00", "..", "1e3", " 1", "9" * 40, "\ud800", "a\x00"]),
)
queries = st.dictionaries(
    st.sampled_from(["limit", "before", "telegram_message_id", "chat_id", "x"]),
    st.one_of(st.integers().map(str), st.text(max_size=10)),
    max_size=4,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_input_gives_a_500(
    fuzz_client: tuple[httpx.AsyncClient, str], data: st.DataObject
) -> None:
    client, user_id = fuzz_client
    kind = data.draw(st.sampled_from(["register", "interaction", "by_telegram", "user", "list"]))
    if kind in ("register", "interaction"):
        path = "/api/users/register" if kind == "register" else "/api/interactions"
        content = data.draw(bodies(user_id))
        ctype = data.draw(st.sampled_from(["application/json", "text/plain", None]))
        headers = {"content-type": ctype} if ctype else {}
        r = await client.post(path, content=content, headers=headers)
        detail: Any = content[:200]
    else:
        value = data.draw(st.one_of(path_values, st.just(user_id)))
        prefix = {
            "by_telegram": "/api/users/by-telegram/",
            "user": "/api/users/",
            "list": "/api/interactions/",
        }[kind]
        params = data.draw(queries)
        r = await client.get(prefix + _quote(value), params=params)
        detail = (value, params)
    assert r.status_code < 500, (kind, detail, r.status_code, r.text)
    if not r.is_redirect:  # a trailing slash is redirected (Starlette), with an empty body
        r.json()  # every other answer, errors included, is JSON


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value.encode("utf-8", "surrogatepass"), safe="")  # invalid UTF-8 on purpose


async def test_stored_odd_values_round_trip(fuzz_client: tuple[httpx.AsyncClient, str]) -> None:
    """Values that pass validation come back unchanged (big ints, unicode, nested metadata)."""
    client, user_id = fuzz_client
    metadata = {"big": 2**70, "emoji": "🙂", "nested": {"a": [1, 2.5, None, True]}, "é": ""}
    r = await client.post(
        "/api/interactions",
        json={"user_id": user_id, "direction": "out", "message_text": "𝕏", "metadata": metadata},
    )
    assert r.status_code == 201, r.text
    assert r.json()["metadata"] == metadata
    assert r.json()["message_text"] == "𝕏"
    assert uuid.UUID(r.json()["user_id"]) == uuid.UUID(user_id)
