"""Cancel the work running for a chat, at once, from outside the chat's queue.

A chat's updates are processed one at a time, in order. Some inputs must not wait their turn:
`/stop` (and Telegram's stop button, `stopped_message_generation`) must end the agent call
running for the chat now, and a new message in `TURN_MODE=interrupt` replaces the turn being
answered. The work that may be cancelled runs inside `scope(chat_key)`; anyone can then call
`cancel(chat_key, reason)`. A cancelled scope raises `Cancelled` (with the reason) to its
owner, who decides what to keep (the partial reply, say); no other task is affected.

Per process: the dispatcher that runs a chat's turn holds its scope. With several replicas the
stop is processed where the chat's turn runs only when the same process ingests it; the
others learn it from the inbox (a `stop` row the running turn checks: see the pipeline).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from app.errors import GatewayError


class Cancelled(GatewayError):
    """The work of a chat was cancelled on purpose (`reason`: "stop", "interrupt", ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cancelled: {reason}")
        self.reason = reason


class Cancellations:
    """chat key -> the task doing cancellable work for it, and why it was cancelled.

    Scopes nest (a turn's agent call inside the turn): the innermost scope open for a chat
    turns the cancellation into `Cancelled`, which then passes through the outer ones like any
    exception, so whoever knows what to do with the reason handles it.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._depth: dict[str, int] = {}
        self._reasons: dict[str, str] = {}

    def running(self, chat_key: str) -> bool:
        return chat_key in self._tasks

    def cancel(self, chat_key: str, reason: str) -> bool:
        """Cancel the chat's running scope; False when nothing was running."""
        task = self._tasks.get(chat_key)
        if task is None or task.done() or chat_key in self._reasons:
            return False
        self._reasons[chat_key] = reason
        task.cancel()
        return True

    @contextlib.contextmanager
    def scope(self, chat_key: str) -> Iterator[None]:
        """Make the block cancellable by `cancel(chat_key, ...)`; raises `Cancelled` if it was."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks[chat_key] = task
        self._depth[chat_key] = self._depth.get(chat_key, 0) + 1
        try:
            yield
        except asyncio.CancelledError:
            reason = self._reasons.pop(chat_key, None)
            if reason is None:
                raise  # cancelled by someone else (shutdown): not ours to swallow
            task.uncancel()
            raise Cancelled(reason) from None
        finally:
            depth = self._depth[chat_key] - 1
            if depth:
                self._depth[chat_key] = depth
            else:
                del self._depth[chat_key]
                if self._tasks.get(chat_key) is task:
                    del self._tasks[chat_key]
                self._reasons.pop(chat_key, None)
