"""Agent actions → inline keyboards; long data behind keys, in memory and in SQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.processing.keyboards import (
    KEY_PREFIX,
    InMemoryCallbackStore,
    SqlCallbackStore,
    build_inline_keyboard,
    make_key,
    resolve_callback_data,
)
from app.storage.engine import make_engine
from app.storage.migrate import create_schema


@pytest.fixture
def store() -> InMemoryCallbackStore:
    return InMemoryCallbackStore()


async def test_data_url_and_string_buttons(store: InMemoryCallbackStore) -> None:
    kb = await build_inline_keyboard(
        [{"text": "Yes", "data": "answer:yes"}, {"text": "Docs", "url": "https://x.test"}, "Maybe"],
        store,
    )
    assert kb == {
        "inline_keyboard": [
            [{"text": "Yes", "callback_data": "answer:yes"}],
            [{"text": "Docs", "url": "https://x.test"}],
            [{"text": "Maybe", "callback_data": "Maybe"}],
        ]
    }
    assert store.items == {}


async def test_rows_are_grouped_and_sorted(store: InMemoryCallbackStore) -> None:
    actions = [
        {"text": "c", "data": "c", "row": 2},
        {"text": "a", "data": "a", "row": 1},
        "loose",
        {"text": "b", "data": "b", "row": 1},
        {"text": "d", "data": "d", "row": "2"},
    ]
    kb = await build_inline_keyboard(actions, store)
    assert kb is not None
    texts = [[b["text"] for b in row] for row in kb["inline_keyboard"]]
    assert texts == [["a", "b"], ["c", "d"], ["loose"]]


async def test_long_rows_are_split(store: InMemoryCallbackStore) -> None:
    kb = await build_inline_keyboard([{"text": str(i), "row": 0} for i in range(10)], store)
    assert kb is not None and [len(r) for r in kb["inline_keyboard"]] == [8, 2]


async def test_unknown_shapes_are_skipped(
    store: InMemoryCallbackStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    actions: list[Any] = [
        42,
        None,
        ["nested"],
        {"label": "no text"},
        {"text": ""},
        {"text": "bad url", "url": "javascript:alert(1)"},
        {"text": "bad data", "data": {"x": 1}},
        {"text": "ok", "data": "ok"},
    ]
    kb = await build_inline_keyboard(actions, store)
    assert kb == {"inline_keyboard": [[{"text": "ok", "callback_data": "ok"}]]}
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 7


async def test_nothing_usable_is_none(store: InMemoryCallbackStore) -> None:
    assert await build_inline_keyboard([], store) is None
    assert await build_inline_keyboard([1, 2], store) is None
    assert await build_inline_keyboard("Yes", store) is None
    assert await build_inline_keyboard(None, store) is None


async def test_text_is_cleaned_and_truncated(store: InMemoryCallbackStore) -> None:
    kb = await build_inline_keyboard([{"text": "  a\n b  ", "data": "x"}, "é" * 100], store)
    assert kb is not None
    first, second = kb["inline_keyboard"]
    assert first[0]["text"] == "a b"
    assert len(second[0]["text"]) == 64 and second[0]["text"].endswith("…")


async def test_data_over_64_bytes_is_stored_and_resolved(store: InMemoryCallbackStore) -> None:
    fits = "a" * 64
    multibyte = "é" * 33  # 33 characters, 66 bytes
    kb = await build_inline_keyboard(
        [
            {"text": "fits", "data": fits},
            {"text": "multi", "data": multibyte},
            {"text": "lookalike", "data": KEY_PREFIX + "mine"},
        ],
        store,
    )
    assert kb is not None
    (b1,), (b2,), (b3,) = kb["inline_keyboard"]
    assert b1["callback_data"] == fits
    for button, original in ((b2, multibyte), (b3, KEY_PREFIX + "mine")):
        key = button["callback_data"]
        assert key.startswith(KEY_PREFIX) and len(key.encode()) <= 64
        assert await resolve_callback_data(key, store) == original
    assert await resolve_callback_data(fits, store) == fits
    assert await resolve_callback_data(KEY_PREFIX + "unknown", store) == KEY_PREFIX + "unknown"


async def test_long_plain_string_keeps_full_data(store: InMemoryCallbackStore) -> None:
    label = "Tell me more about the pricing of the premium plan for teams, please"
    kb = await build_inline_keyboard([label], store)
    assert kb is not None
    button = kb["inline_keyboard"][0][0]
    assert await resolve_callback_data(button["callback_data"], store) == label


async def test_keys_are_deterministic() -> None:
    assert make_key("x" * 100) == make_key("x" * 100) != make_key("y" * 100)
    assert len(make_key("x")) == 25


async def test_sql_store_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        await create_schema(engine)
        store = SqlCallbackStore(engine)
        data = "ü" * 40
        key = await store.put(data)
        assert await store.put(data) == key  # idempotent
        assert await store.get(key) == data
        assert await store.get(KEY_PREFIX + "nope") is None
        kb = await build_inline_keyboard([{"text": "x", "data": data}], store)
        assert kb is not None
        assert (
            await resolve_callback_data(kb["inline_keyboard"][0][0]["callback_data"], store) == data
        )
    finally:
        await engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    # Sync fixture: the helper runs its own event loop to create and drop the database.
    from tests.support.pg import temp_database

    with temp_database("kb") as url:
        yield url


@pytest.mark.postgres
async def test_sql_store_postgres(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        await create_schema(engine)
        store = SqlCallbackStore(engine)
        data = "данные " * 20
        key = await store.put(data)
        assert await store.put(data) == key
        assert await store.get(key) == data
        assert await store.get(KEY_PREFIX + "nope") is None
    finally:
        await engine.dispose()
