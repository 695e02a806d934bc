"""Stored JSON text, as the admin API shows it: the value, or the text when that is safer.

A payload is stored as received (the webhook accepts any valid JSON inside an update), so a row
can hold a value nested hundreds of levels deep. Serialising the answer recurses per level
(FastAPI's `jsonable_encoder`, pydantic's serializer stops at 255 levels) and such a row made
`GET /admin/dead` a 500 for every row listed with it. Values nested deeper than
`MAX_DISPLAY_DEPTH`, and text that is not JSON or too deep to parse, are shown as the stored text.
"""

from __future__ import annotations

import json
from typing import Any

#: Telegram's own updates are about 10 levels deep; far below every serialiser's limit.
MAX_DISPLAY_DEPTH = 64


def within_depth(value: Any, limit: int = MAX_DISPLAY_DEPTH) -> bool:
    """Whether `value` nests at most `limit` containers deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def stored_json(text: str) -> Any:
    """The stored text's value for display; the text itself if not JSON or too deep. Never
    raises."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return value if within_depth(value) else text
