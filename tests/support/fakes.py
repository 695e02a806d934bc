"""In-memory stand-ins for the gateway's neighbours, implementing the production Protocols.

Each fake is checked against the Protocol it replaces (the `_check` assignments at the bottom),
so a change of signature in production breaks the fake at type-check time, not in a confusing
test failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from app.errors import UserServiceError
from app.processing.ports import DeliveryPort, UserService
from app.processing.streaming import PreviewPort
from app.storage.retry_queue import InteractionWriter


class FakeUserService:
    """Users and history rows in lists; every write is stored (no unique key, like the chaos
    stand-in), so a test sees a duplicate write as two rows. Failures can be switched on."""

    def __init__(self) -> None:
        self.users: dict[int, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.fail_log: UserServiceError | None = None
        self.fail_lookup: UserServiceError | None = None
        self.fail_find: UserServiceError | None = None

    async def get_user_by_telegram(self, telegram_id: int) -> dict[str, Any] | None:
        if self.fail_lookup:
            raise self.fail_lookup
        return self.users.get(telegram_id)

    async def register_user_from_telegram(
        self, telegram_id: int, chat_obj: dict[str, Any]
    ) -> dict[str, Any]:
        user = {
            "id": f"u{telegram_id}",
            "telegram_id": telegram_id,
            "full_name": chat_obj.get("first_name"),
        }
        self.users[telegram_id] = user
        return user

    async def log_interaction(
        self,
        user_id: str,
        message_text: str,
        direction: str = "in",
        telegram_message_id: int | None = None,
        metadata: dict[str, Any] | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        if self.fail_log:
            raise self.fail_log
        row = {
            "user_id": user_id,
            "message_text": message_text,
            "direction": direction,
            "telegram_message_id": telegram_message_id,
            "metadata": metadata,
            "chat_id": chat_id,
        }
        self.rows.append(row)
        return row

    async def get_interactions(
        self, user_id: str, limit: int = 20, **filters: Any
    ) -> list[dict[str, Any]]:
        chat_id = filters.get("chat_id")
        return [
            r
            for r in reversed(self.rows)
            if r["user_id"] == user_id and (chat_id is None or r.get("chat_id") == chat_id)
        ][:limit]

    async def find_interactions(
        self,
        user_id: str,
        *,
        telegram_message_id: int | None = None,
        chat_id: int | None = None,
        direction: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        if self.fail_find:
            raise self.fail_find
        return [
            r
            for r in reversed(self.rows)
            if r["user_id"] == user_id
            and (telegram_message_id is None or r.get("telegram_message_id") == telegram_message_id)
            and (chat_id is None or r.get("chat_id") in (None, chat_id))
            and (direction is None or r.get("direction") in (None, direction))
        ][:limit]

    async def interaction_exists_by_telegram_message_id(
        self,
        user_id: str,
        telegram_message_id: int,
        chat_id: int | None = None,
        direction: str | None = None,
    ) -> bool:
        rows = await self.find_interactions(
            user_id, telegram_message_id=telegram_message_id, chat_id=chat_id, direction=direction
        )
        return bool(rows)


class FakeDelivery:
    """Records what the pipeline enqueues; typing and reachability calls are recorded too."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.typing_chats: list[int] = []
        self.active: list[int] = []

    async def enqueue(
        self,
        job_key: str,
        chat_id: int,
        text: str,
        *,
        parse_mode: str | None = None,
        reply_markup: dict[str, Any] | None = None,
        reply_to_message_id: int | None = None,
        history: dict[str, Any] | None = None,
        edit_message_id: int | None = None,
        business_connection_id: str | None = None,
    ) -> None:
        if any(j["job_key"] == job_key for j in self.jobs):
            return  # idempotent on the key, like the real outbox
        self.jobs.append(
            {
                "job_key": job_key,
                "chat_id": chat_id,
                "text": text,
                "parse_mode": parse_mode,
                "reply_markup": reply_markup,
                "reply_to_message_id": reply_to_message_id,
                "history": history,
                "edit_message_id": edit_message_id,
                "business_connection_id": business_connection_id,
            }
        )

    @contextlib.asynccontextmanager
    async def typing(
        self, chat_id: int, business_connection_id: str | None = None
    ) -> AsyncIterator[None]:
        self.typing_chats.append(chat_id)
        yield

    async def mark_active(self, chat_id: int) -> None:
        self.active.append(chat_id)


class NoPreviews:
    """For pipelines with streaming off: a preview call is a bug (tests/e2e/test_streaming.py
    streams for real)."""

    async def send(self, chat_id: int, text: str, **params: Any) -> int | None:
        raise AssertionError("no previews here")

    async def edit(self, chat_id: int, message_id: int, text: str, **params: Any) -> bool:
        raise AssertionError("no previews here")

    async def draft(self, chat_id: int, draft_id: int, text: str, *, can_stop: bool) -> bool:
        raise AssertionError("no previews here")


_check_users: UserService = FakeUserService()
_check_writer: InteractionWriter = FakeUserService()
_check_delivery: DeliveryPort = FakeDelivery()
_check_previews: PreviewPort = NoPreviews()
