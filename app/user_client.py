"""The User Service over HTTP: who a Telegram user is, and their chat history.

The gateway never touches the User Service's database; these calls are its whole contract
(DESIGN.md, "Contracts with the other services"). Every failure becomes a `UserServiceError`
(`app.errors`, importable from here as before) carrying the status; what it means (wait, retry,
give up) is `app.errors.classify`'s decision, not this module's. Messages are short and carry no
secret (the API key is a header, never echoed).

The module-level functions keep the original API: inside a running app they use its client,
outside one each call opens and closes its own (`app.current`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from app import current
from app.errors import UserServiceError, classify
from app.logger import get_logger
from app.utils import build_display_name

log = get_logger(__name__)

_BODY_LIMIT = 2000


def _body(response: httpx.Response) -> Any:
    """The decoded JSON body, else (a bounded prefix of) the text."""
    try:
        return response.json()
    except ValueError:
        return response.text[:_BODY_LIMIT]


def _already_registered(status: int, body: Any) -> bool:
    if status == 409:
        return True
    if status != 400:
        return False
    text = str(body).lower()
    return "already" in text or "exists" in text


def _rows(body: Any) -> list[dict[str, Any]] | None:
    """A list of interaction rows, from a bare list or a ``{"items"|"data"|...: [...]}`` page."""
    if isinstance(body, dict):
        for key in ("items", "interactions", "data", "results"):
            if isinstance(body.get(key), list):
                body = body[key]
                break
    if isinstance(body, list):
        return [row for row in body if isinstance(row, dict)]
    return None


class UserServiceClient:
    """Calls to one User Service over a shared `httpx.AsyncClient` (owned by the caller)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base: str,
        api_key: str | None = None,
        timeout: float = 10,
    ) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"UserServiceClient(base={self.base!r})"

    async def _request(
        self,
        op: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"X-API-Key": self._api_key} if self._api_key else {}
        try:
            return await self.http.request(
                method,
                self.base + path,
                json=json,
                params=params,
                headers=headers,
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "network error"
            reason = f"{kind}: {exc.__class__.__name__}"
            log.warning("user service call failed", extra={"op": op, "error": reason})
            raise UserServiceError(f"User Service {op} failed: {reason}") from None

    def _fail(self, op: str, response: httpx.Response) -> UserServiceError:
        err = UserServiceError(
            f"User Service {op} failed: HTTP {response.status_code}",
            status=response.status_code,
            body=_body(response),
        )
        log.warning(
            "user service call failed",
            extra={"op": op, "status": err.status, "verdict": classify(err).value},
        )
        return err

    def _json_dict(self, op: str, response: httpx.Response) -> dict[str, Any]:
        body = _body(response)
        if not isinstance(body, dict):
            # A 2xx that is not the documented JSON: a proxy page or a half-deployed service.
            raise UserServiceError(
                f"User Service {op} failed: unexpected response body",
                status=response.status_code,
                body=body,
                malformed=True,
            )
        return body

    async def get_user_by_telegram(self, telegram_id: int) -> dict[str, Any] | None:
        """The user registered for this Telegram id, or None (404)."""
        op = "get_user_by_telegram"
        response = await self._request(
            op, "GET", f"/api/users/by-telegram/{quote(str(telegram_id), safe='')}"
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(op, response)
        return self._json_dict(op, response)

    async def register_user_from_telegram(
        self, telegram_id: int, chat_obj: dict[str, Any]
    ) -> dict[str, Any]:
        """Register the user (name from `chat_obj`: pass the `from` user) and return it with `id`.

        Registration is idempotent from the caller's point of view: "already registered" (409,
        or a 400 that says so) returns the existing user, from the 409 body when it carries one,
        else by fetching it.
        """
        op = "register_user"
        payload = {
            "telegram_id": telegram_id,
            "phone": None,
            "full_name": build_display_name(chat_obj),
            "email": None,
        }
        response = await self._request(op, "POST", "/api/users/register", json=payload)
        status = response.status_code
        if status in (200, 201):
            body = self._json_dict(op, response)
            user = body.get("user") if isinstance(body.get("user"), dict) else body
            if isinstance(user, dict) and user.get("id") is not None:
                return user
            raise UserServiceError(
                f"User Service {op} failed: response has no user id",
                status=status,
                body=body,
                malformed=True,
            )
        body = _body(response)
        if not _already_registered(status, body):
            raise self._fail(op, response)
        if isinstance(body, dict):
            user = body.get("user")
            if isinstance(user, dict) and user.get("id") is not None:
                return user
        existing = await self.get_user_by_telegram(telegram_id)
        if existing is None:
            # "Already registered" but not found: a race with a deletion, or a confused service.
            raise UserServiceError(
                f"User Service {op} failed: already registered but not found",
                status=status,
                body=body,
                malformed=True,
            )
        return existing

    async def log_interaction(
        self,
        user_id: str,
        message_text: str,
        direction: str = "in",
        telegram_message_id: int | None = None,
        metadata: dict[str, Any] | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        """Store one history row and return it (200: a replay, the existing row; 201: created).

        `metadata` is sent as given (the trimmed raw update, or reply details); `chat_id` only
        when known, so services that predate it keep working.
        """
        op = "log_interaction"
        payload: dict[str, Any] = {
            "user_id": user_id,
            "telegram_message_id": telegram_message_id,
            "direction": direction,
            "message_text": message_text,
            "metadata": metadata,
        }
        if chat_id is not None:
            payload["chat_id"] = chat_id
        response = await self._request(op, "POST", "/api/interactions", json=payload)
        if response.status_code not in (200, 201):
            raise self._fail(op, response)
        return self._json_dict(op, response)

    async def get_interactions(
        self, user_id: str, limit: int = 20, **filters: Any
    ) -> list[dict[str, Any]]:
        """The user's latest history rows, newest first (as the service returns them).

        `filters` are passed as query parameters (``telegram_message_id``, ``chat_id``, ``before``);
        a service that does not know one ignores it, so callers must not rely on them alone.
        """
        op = "get_interactions"
        params = {"limit": limit, **{k: v for k, v in filters.items() if v is not None}}
        response = await self._request(
            op, "GET", f"/api/interactions/{quote(str(user_id), safe='')}", params=params
        )
        if response.status_code != 200:
            raise self._fail(op, response)
        rows = _rows(_body(response))
        if rows is None:
            raise UserServiceError(
                f"User Service {op} failed: unexpected response body",
                status=response.status_code,
                body=_body(response),
                malformed=True,
            )
        return rows

    async def find_interactions(
        self,
        user_id: str,
        *,
        telegram_message_id: int | None = None,
        chat_id: int | None = None,
        direction: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """The user's recent history rows that match, newest first (checked here, not trusted).

        Asks the service to filter, then checks the rows itself: a service that ignores the
        filter returns its latest rows, which must not count as a match. Message ids are only
        unique within a chat, so `chat_id` narrows the match when given and present in the rows.
        An unknown user (404) has no history.
        """
        try:
            rows = await self.get_interactions(
                user_id, limit=limit, telegram_message_id=telegram_message_id, chat_id=chat_id
            )
        except UserServiceError as exc:
            if exc.status == 404:
                return []
            raise
        matches = []
        for row in rows:
            if telegram_message_id is not None and row.get("telegram_message_id") != (
                telegram_message_id
            ):
                continue
            row_chat = row.get("chat_id")
            if chat_id is not None and row_chat is not None and row_chat != chat_id:
                continue
            if direction is not None and row.get("direction") not in (None, direction):
                continue
            matches.append(row)
        return matches

    async def interaction_exists_by_telegram_message_id(
        self,
        user_id: str,
        telegram_message_id: int,
        chat_id: int | None = None,
        direction: str | None = None,
    ) -> bool:
        """Whether a history row for this message is already stored (dedupe of a replay)."""
        rows = await self.find_interactions(
            user_id, telegram_message_id=telegram_message_id, chat_id=chat_id, direction=direction
        )
        return bool(rows)


# --- the original module-level API ----------------------------------------------------------


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[UserServiceClient]:
    """The running app's client, else a one-call client from the settings (closed after)."""
    running = current.get()
    if running is not None:
        yield running.users
        return
    from app.config import get_settings

    s = get_settings()
    async with httpx.AsyncClient() as http:
        yield UserServiceClient(
            http, s.USER_SERVICE_BASE, s.USER_SERVICE_API_KEY, s.REQUEST_TIMEOUT
        )


async def get_user_by_telegram(telegram_id: int) -> dict[str, Any] | None:
    async with _client() as client:
        return await client.get_user_by_telegram(telegram_id)


async def register_user_from_telegram(telegram_id: int, chat_obj: dict[str, Any]) -> dict[str, Any]:
    async with _client() as client:
        return await client.register_user_from_telegram(telegram_id, chat_obj)


async def log_interaction(
    user_id: str,
    message_text: str,
    direction: str = "in",
    telegram_message_id: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    async with _client() as client:
        return await client.log_interaction(
            user_id, message_text, direction, telegram_message_id, metadata
        )


async def get_interactions(user_id: str, limit: int = 20) -> list[dict[str, Any]]:
    async with _client() as client:
        return await client.get_interactions(user_id, limit)


async def interaction_exists_by_telegram_message_id(user_id: str, telegram_message_id: int) -> bool:
    async with _client() as client:
        return await client.interaction_exists_by_telegram_message_id(user_id, telegram_message_id)


__all__ = [
    "UserServiceClient",
    "UserServiceError",
    "get_interactions",
    "get_user_by_telegram",
    "interaction_exists_by_telegram_message_id",
    "log_interaction",
    "register_user_from_telegram",
]
