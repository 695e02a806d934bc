"""Agent `actions` → Telegram inline keyboards, and long button data kept server-side.

An agent's actions are free-form JSON; Telegram is strict (non-empty text, http(s)/tg URLs,
`callback_data` of 1-64 *bytes*). A bad button must never cost the person their reply, so
unusable items are skipped with a warning and the rest of the keyboard is built.

Layout: items with a ``"row"`` number share that row (rows sorted by number, buttons in the order
given, at most `MAX_PER_ROW` per row); items without one get a row each, after the numbered rows,
in the order given (a vertical list suits suggestion buttons, whose labels are often long).

Data that does not fit in 64 bytes, or that starts with `KEY_PREFIX` (so it could be mistaken
for one of our keys), is stored in a `CallbackStore` and replaced by a short key;
`resolve_callback_data` maps a pressed button's data back.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.logger import get_logger
from app.storage.callbacks import KEY_PREFIX, SqlCallbackStore, make_key

log = get_logger(__name__)

MAX_DATA_BYTES = 64
MAX_TEXT_CHARS = 64
MAX_PER_ROW = 8
MAX_BUTTONS = 100
_URL_SCHEMES = ("https://", "http://", "tg://")


class CallbackStore(Protocol):
    """Where long callback data lives, behind a short key (`SqlCallbackStore` in production)."""

    async def put(self, data: str) -> str: ...

    async def get(self, key: str) -> str | None: ...


class InMemoryCallbackStore:
    """A `CallbackStore` in a dict: tests and throw-away runs."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    async def put(self, data: str) -> str:
        key = make_key(data)
        self.items[key] = data
        return key

    async def get(self, key: str) -> str | None:
        return self.items.get(key)


def needs_storing(data: str) -> bool:
    """True when `data` cannot travel as Telegram `callback_data` as is."""
    return len(data.encode("utf-8", "surrogatepass")) > MAX_DATA_BYTES or data.startswith(
        KEY_PREFIX
    )


async def resolve_callback_data(data: str, store: CallbackStore) -> str:
    """The agent's original data for a pressed button (unknown keys come back unchanged)."""
    if not data.startswith(KEY_PREFIX):
        return data
    stored = await store.get(data)
    return stored if stored is not None else data


def _label(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def _row_number(item: dict[str, Any]) -> int | None:
    row = item.get("row")
    if isinstance(row, bool):
        return None
    if isinstance(row, int):
        return row
    if isinstance(row, float) and row.is_integer():
        return int(row)
    if isinstance(row, str) and row.strip().lstrip("-").isdigit():
        return int(row.strip())
    return None


async def _button(item: Any, store: CallbackStore) -> tuple[dict[str, str], int | None] | None:
    """One Telegram button and its row number, or None (logged) when the item is unusable."""
    if isinstance(item, str):
        item = {"text": item}
    if not isinstance(item, dict):
        log.warning("agent action skipped: not an object", extra={"type": type(item).__name__})
        return None
    text = _label(item.get("text"))
    if text is None:
        log.warning("agent action skipped: no usable text", extra={"keys": sorted(item)[:10]})
        return None
    row = _row_number(item)
    if "url" in item:
        url = item.get("url")
        if not isinstance(url, str) or not url.strip().lower().startswith(_URL_SCHEMES):
            log.warning("agent action skipped: url is not http(s) or tg", extra={"text": text})
            return None
        return {"text": text, "url": url.strip()}, row
    data = item.get("data", item.get("callback_data"))
    if data is None or data == "":
        # {"text": "Yes"} (or a plain string): the button says what it sends.
        data = item.get("text")
    if isinstance(data, bool) or not isinstance(data, str | int | float):
        log.warning("agent action skipped: data is not a string", extra={"text": text})
        return None
    data = str(data)
    if needs_storing(data):
        data = await store.put(data)
    return {"text": text, "callback_data": data}, row


async def build_inline_keyboard(actions: Any, store: CallbackStore) -> dict[str, Any] | None:
    """``{"inline_keyboard": [[button, ...], ...]}`` for the usable actions, or None if none.

    Store errors (the database is down) propagate: the caller retries the whole reply rather
    than sending buttons that could not be resolved later.
    """
    if not isinstance(actions, list) or not actions:
        if actions not in (None, []):
            log.warning("agent actions ignored: not a list")
        return None
    numbered: dict[int, list[dict[str, str]]] = {}
    single: list[list[dict[str, str]]] = []
    count = 0
    for item in actions:
        if count >= MAX_BUTTONS:
            log.warning("agent actions truncated", extra={"limit": MAX_BUTTONS})
            break
        built = await _button(item, store)
        if built is None:
            continue
        button, row = built
        count += 1
        if row is None:
            single.append([button])
        else:
            numbered.setdefault(row, []).append(button)
    rows: list[list[dict[str, str]]] = []
    for number in sorted(numbered):
        buttons = numbered[number]
        rows.extend(buttons[i : i + MAX_PER_ROW] for i in range(0, len(buttons), MAX_PER_ROW))
    rows.extend(single)
    return {"inline_keyboard": rows} if rows else None


__all__ = [
    "KEY_PREFIX",
    "CallbackStore",
    "InMemoryCallbackStore",
    "SqlCallbackStore",
    "build_inline_keyboard",
    "make_key",
    "needs_storing",
    "resolve_callback_data",
]
