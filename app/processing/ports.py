"""What processing needs from its neighbours, as Protocols (the real classes and test fakes
both implement them, and mypy checks both)."""

from __future__ import annotations

from typing import Any, Protocol


class UserService(Protocol):
    """The User Service calls the pipeline and the history make (`UserServiceClient`)."""

    async def get_user_by_telegram(self, telegram_id: int) -> dict[str, Any] | None: ...

    async def register_user_from_telegram(
        self, telegram_id: int, chat_obj: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def log_interaction(
        self,
        user_id: str,
        message_text: str,
        direction: str = "in",
        telegram_message_id: int | None = None,
        metadata: dict[str, Any] | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]: ...

    async def get_interactions(
        self, user_id: str, limit: int = 20, **filters: Any
    ) -> list[dict[str, Any]]: ...

    async def find_interactions(
        self,
        user_id: str,
        *,
        telegram_message_id: int | None = None,
        chat_id: int | None = None,
        direction: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]: ...


class DeliveryPort(Protocol):
    """What the pipeline needs from the delivery engine (`app.delivery.Delivery`)."""

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
    ) -> None: ...

    def typing(self, chat_id: int, business_connection_id: str | None = None) -> Any: ...

    async def mark_active(self, chat_id: int) -> None: ...
