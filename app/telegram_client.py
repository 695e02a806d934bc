"""The Telegram Bot API, one HTTP call at a time.

`TelegramClient.call` makes exactly one request and either returns Telegram's envelope
(``{"ok": true, "result": ...}``) or raises `TelegramClientError`, which classifies the failure
(rate limited, transient, permanent, bad markup) so the delivery engine can decide what to do.
There are no retries here on purpose: retrying, rate limiting and giving up belong to the caller,
which knows whether a message was already sent and how long it may wait.

The bot token is part of every URL. It never appears in an exception message or a log line
written here: network errors are described by their class name only (httpx's own messages and
`__cause__` chains contain the URL), and Telegram's descriptions are redacted before use.

The module-level functions keep the original API: inside a running app they use its client,
outside one each call opens and closes its own (`app.current`). `TelegramClientError` lives in
`app.errors` with the gateway's other exceptions and is importable from here as before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from app import current
from app.errors import TelegramClientError, Verdict, classify
from app.logger import get_logger, redactor

log = get_logger(__name__)

DEFAULT_BASE = "https://api.telegram.org"


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _error_from_body(method: str, status: int, body: Any) -> TelegramClientError:
    data = body if isinstance(body, dict) else {}
    params = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    assert isinstance(params, dict)
    code = data.get("error_code")
    migrate = params.get("migrate_to_chat_id")
    description = data.get("description")
    return TelegramClientError(
        method,
        status=status,
        error_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        description=redactor(description) if isinstance(description, str) else "",
        retry_after=_number(params.get("retry_after")),
        migrate_to_chat_id=migrate if isinstance(migrate, int) else None,
    )


def _compact(params: dict[str, Any]) -> dict[str, Any]:
    # Optional Bot API parameters are omitted rather than sent as null.
    return {k: v for k, v in params.items() if v is not None}


class TelegramClient:
    """Bot API calls over a shared `httpx.AsyncClient` (owned by the caller)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: str,
        base: str = DEFAULT_BASE,
        timeout: float = 10,
    ) -> None:
        self.http = http
        self._token = token
        self.base = base.rstrip("/")
        self.timeout = timeout
        redactor.update([token])

    def __repr__(self) -> str:
        return f"TelegramClient(base={self.base!r})"

    def _scrub(self, text: str) -> str:
        return redactor(text.replace(self._token, "***"))

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP timeout, passed to httpx
    ) -> dict[str, Any]:
        """POST `params` as JSON to `method`; the envelope on success, else `TelegramClientError`."""
        url = f"{self.base}/bot{self._token}/{method}"
        try:
            response = await self.http.post(
                url,
                json=_compact(params or {}),
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            # str(exc) may contain the URL (and so the token): describe the class only, and do
            # not chain the original exception into tracebacks.
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "network error"
            err = TelegramClientError(method, description=f"{kind}: {exc.__class__.__name__}")
            log.warning(
                "telegram call failed",
                extra={"method": method, "error": err.description},
            )
            raise err from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict) and body.get("ok") is True:
            return body
        if body is None:
            err = TelegramClientError(
                method, status=response.status_code, description="response is not JSON"
            )
        else:
            err = _error_from_body(method, response.status_code, body)
            if not err.description:
                err = TelegramClientError(
                    method,
                    status=err.status,
                    error_code=err.error_code,
                    description="unexpected response",
                    retry_after=err.retry_after,
                    migrate_to_chat_id=err.migrate_to_chat_id,
                )
        log.log(
            logging.WARNING
            if classify(err) in (Verdict.RATE_LIMITED, Verdict.OUTAGE)
            else logging.INFO,
            "telegram call failed",
            extra={
                "method": method,
                "status": err.status,
                "error_code": err.error_code,
                "description": self._scrub(err.description),
                "retry_after": err.retry_after,
            },
        )
        raise err

    async def send_message(
        self,
        chat_id: int | str,
        text: str,
        parse_mode: str | None = None,
        reply_markup: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """sendMessage; `extra` passes any other Bot API parameter (reply_parameters, ...)."""
        params = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": parse_mode,
            "reply_markup": reply_markup,
            **extra,
        }
        return await self.call("sendMessage", params)

    async def send_typing(self, chat_id: int | str) -> dict[str, Any]:
        """sendChatAction "typing" (shown for about five seconds)."""
        return await self.call("sendChatAction", {"chat_id": chat_id, "action": "typing"})

    async def answer_callback_query(
        self, callback_query_id: str, text: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """answerCallbackQuery: stops the spinner on the pressed button."""
        params = {"callback_query_id": callback_query_id, "text": text, **extra}
        return await self.call("answerCallbackQuery", params)

    async def edit_message_reply_markup(
        self,
        chat_id: int | str | None = None,
        message_id: int | None = None,
        reply_markup: dict[str, Any] | None = None,
        inline_message_id: str | None = None,
    ) -> dict[str, Any]:
        """editMessageReplyMarkup (e.g. remove buttons once pressed: reply_markup=None)."""
        params = {
            "chat_id": chat_id,
            "message_id": message_id,
            "inline_message_id": inline_message_id,
            "reply_markup": reply_markup,
        }
        return await self.call("editMessageReplyMarkup", params)

    async def get_file(self, file_id: str) -> dict[str, Any]:
        """getFile: the File object (`file_size`, `file_path`) needed to download it."""
        return await self.call("getFile", {"file_id": file_id})

    @contextlib.asynccontextmanager
    async def download(
        self,
        file_path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP timeout, passed to httpx
    ) -> AsyncIterator[httpx.Response]:
        """Stream a file from Telegram's file server (`file_path` from `get_file`).

        The URL carries the token, so, as for `call`, failures are described without it: a
        non-2xx answer or a network error is a `TelegramClientError` naming the method
        "download" and the status or the error's class only.
        """
        url = f"{self.base}/file/bot{self._token}/{quote(file_path, safe='/')}"
        try:
            async with self.http.stream(
                "GET", url, timeout=self.timeout if timeout is None else timeout
            ) as response:
                if not response.is_success:
                    raise TelegramClientError(
                        "download",
                        status=response.status_code,
                        error_code=response.status_code,
                        description=f"file server answered HTTP {response.status_code}",
                    )
                yield response
        except httpx.HTTPError as exc:
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "network error"
            raise TelegramClientError(
                "download", description=f"{kind}: {exc.__class__.__name__}"
            ) from None

    async def set_webhook(
        self, url: str, secret_token: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """setWebhook; `extra`: allowed_updates, drop_pending_updates, max_connections, ..."""
        return await self.call("setWebhook", {"url": url, "secret_token": secret_token, **extra})

    async def delete_webhook(self, drop_pending_updates: bool = False) -> dict[str, Any]:
        """deleteWebhook (needed before long polling with getUpdates)."""
        return await self.call("deleteWebhook", {"drop_pending_updates": drop_pending_updates})

    async def get_me(self) -> dict[str, Any]:
        """getMe: the bot's own user (checks the token)."""
        return await self.call("getMe")

    async def get_updates(
        self,
        offset: int | None = None,
        timeout: int = 0,  # noqa: ASYNC109 - Telegram's long-poll parameter
        allowed_updates: list[str] | None = None,
    ) -> dict[str, Any]:
        """getUpdates long poll; the HTTP timeout is the poll time plus the usual timeout."""
        params = {"offset": offset, "timeout": timeout, "allowed_updates": allowed_updates}
        return await self.call("getUpdates", params, timeout=self.timeout + timeout)


# --- the original module-level API ----------------------------------------------------------


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[TelegramClient]:
    """The running app's client, else a one-call client from the settings (closed after)."""
    running = current.get()
    if running is not None:
        yield running.telegram
        return
    from app.config import get_settings

    s = get_settings()
    async with httpx.AsyncClient() as http:
        yield TelegramClient(http, s.BOT_TOKEN, s.TELEGRAM_API_BASE, s.REQUEST_TIMEOUT)


async def send_message(chat_id: int, text: str, parse_mode: str | None = None) -> dict[str, Any]:
    async with _client() as client:
        return await client.send_message(chat_id, text, parse_mode)


async def send_typing(chat_id: int) -> dict[str, Any]:
    async with _client() as client:
        return await client.send_typing(chat_id)


async def set_webhook(url: str, secret_token: str | None = None) -> dict[str, Any]:
    async with _client() as client:
        return await client.set_webhook(url, secret_token)


async def delete_webhook() -> dict[str, Any]:
    async with _client() as client:
        return await client.delete_webhook()


__all__ = [
    "TelegramClient",
    "TelegramClientError",
    "delete_webhook",
    "send_message",
    "send_typing",
    "set_webhook",
]
