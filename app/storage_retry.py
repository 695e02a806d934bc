"""The original retry-queue functions, over the running app's queue (`app.storage.retry_queue`).

`enqueue_failed_interaction(payload)` is synchronous, as specified: it schedules the durable
insert on the running event loop (async code should `await RetryQueue.enqueue(...)`, which
returns once the row is committed). `flush_retries()` replays what is due. Both need the
running gateway: the queue is a table in its database.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app import current
from app.storage.retry_queue import RetryQueue

_pending: set[asyncio.Task[None]] = set()


def enqueue_failed_interaction(payload: dict[str, Any]) -> None:
    """Queue a failed `log_interaction` call (its keyword arguments) for a later replay."""
    queue = current.require("enqueue_failed_interaction").retry_queue
    task = asyncio.get_running_loop().create_task(queue.enqueue(dict(payload)))
    _pending.add(task)  # keep a reference until the insert is done
    task.add_done_callback(_pending.discard)


async def flush_retries() -> int:
    """Replay queued history writes now; returns how many were written."""
    return await current.require("flush_retries").retry_queue.flush()


__all__ = ["RetryQueue", "enqueue_failed_interaction", "flush_retries"]
