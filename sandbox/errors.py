"""Telegram-shaped errors: raising one anywhere in a method handler yields the real envelope."""

from __future__ import annotations

import math
from typing import Any


class ApiError(Exception):
    """An error the Bot API would answer with ``{"ok": false, ...}``."""

    def __init__(
        self, code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def too_many_requests(wait_seconds: float) -> ApiError:
    """429 with whole seconds, rounded up (Telegram never says "retry after 0")."""
    retry = max(1, math.ceil(wait_seconds))
    return ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})


UNAUTHORIZED = ApiError(401, "Unauthorized")
NOT_FOUND = ApiError(404, "Not Found")
BLOCKED = ApiError(403, "Forbidden: bot was blocked by the user")
CHAT_NOT_FOUND_TEXT = "chat not found"
WEBHOOK_CONFLICT = ApiError(
    409,
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first",
)
INTERNAL = {"ok": False, "error_code": 500, "description": "Internal Server Error"}
