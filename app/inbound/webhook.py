"""`POST /webhook/telegram`: authenticate, parse, store durably, answer.

A raw Starlette endpoint rather than a FastAPI body model: the route is the gateway's hot path,
and per-request model validation costs more than the rest of the request together. The checks
it does are exactly the ones that decide the HTTP answer:

- secret header mismatch → 403, nothing stored;
- body too large → 413; not JSON → 400;
- JSON that is not an update, or an update kind the gateway does not handle → 200, ignored;
- stored (or already stored: a redelivery) → 200 `{"ok": true}`;
- could not be stored → 503, so Telegram delivers it again later. Never a 200 for a lost update.

Memory and time are bounded per request and in total: a body must arrive within
`body_timeout` seconds (else 408), and at most `LARGE_BODY_SLOTS` bodies over `LARGE_BODY`
bytes are handled at once, from their first byte to the answer (the others wait for a slot,
unread, within the same deadline). Telegram's updates are a few kilobytes; without the bound,
200 concurrent 1 MB bodies held ~720 MiB until committed (the bytes, the decoded text and the
parsed object of each; `bench/webhook_memory.py`). A client that hangs up mid-body is logged at
INFO: it is the client's doing, not a fault of the gateway.

A worker-only process (`GATEWAY_ROLE=worker`) stores nothing: `make_refusing_endpoint` answers
every POST with 503, so a misrouted update is redelivered to an ingesting process, not lost.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app.errors import IngestUnavailable
from app.inbound.ingest import IngestBatcher, classify_update
from app.logger import get_logger
from app.metrics import Metrics
from app.storage.inbox import NewUpdate

log = get_logger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 (a header name)
_OK = b'{"ok":true}'
#: A body larger than this (declared, or as it arrives) needs one of the slots to be read.
LARGE_BODY = 64 * 1024
#: Large bodies handled at the same time, per process (each costs 2-3x its size while parsed).
LARGE_BODY_SLOTS = 8


class _TooLarge(Exception):
    pass


class _Slot:
    """One request's claim on the large-body semaphore: taken at most once, released once."""

    __slots__ = ("_held", "_semaphore")

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._held = False

    async def take(self) -> None:
        if not self._held:
            await self._semaphore.acquire()
            self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()


def _json(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def make_webhook_endpoint(
    *,
    secret: str | None,
    max_body: int,
    batcher: Callable[[], IngestBatcher | None],
    metrics: Metrics,
    body_timeout: float = 10.0,
    large_body_slots: int = LARGE_BODY_SLOTS,
) -> Callable[[Request], Awaitable[Response]]:
    """Build the endpoint; `batcher` returns the running batcher (None before start-up);
    `body_timeout`: seconds for the whole body to arrive; `large_body_slots`: how many bodies
    over `LARGE_BODY` are handled at once."""
    secret_bytes = secret.encode() if secret else None
    outcome = metrics.webhook_requests
    stored = outcome.labels("stored")  # bound once: .labels() costs ~10 us per call
    large_slots = asyncio.Semaphore(large_body_slots)

    async def read_body(request: Request, declared: int | None, slot: _Slot) -> bytearray:
        """The body, at most `max_body` bytes (else `_TooLarge`), taking a large-body slot
        before a large one is read. Raises `ClientDisconnect`, or `TimeoutError` (the caller's
        deadline) while waiting for a slot or for the bytes."""
        body = bytearray()
        if declared is not None and declared > LARGE_BODY:
            await slot.take()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise _TooLarge
            if len(body) > LARGE_BODY:
                await slot.take()
        return body

    async def webhook(request: Request) -> Response:
        if secret_bytes is not None:
            given = request.headers.get(SECRET_HEADER, "").encode()
            if not hmac.compare_digest(given, secret_bytes):
                outcome.labels("forbidden").inc()
                log.warning("webhook call with a wrong or missing secret token")
                return _json(403, b'{"ok":false,"description":"forbidden"}')
        length = request.headers.get("content-length")
        if length is not None and (
            not length.isascii() or not length.isdigit() or int(length) > max_body
        ):
            outcome.labels("too_large").inc()
            return _json(413, b'{"ok":false,"description":"request body too large"}')
        # A large body keeps its slot until it is answered: its bytes, text and parsed copy
        # live until the row is committed, not only while it is read.
        slot = _Slot(large_slots)
        try:
            return await receive_and_store(request, length, slot)
        finally:
            slot.release()

    async def receive_and_store(request: Request, length: str | None, slot: _Slot) -> Response:
        try:
            async with asyncio.timeout(body_timeout):
                body = await read_body(request, None if length is None else int(length), slot)
        except _TooLarge:
            outcome.labels("too_large").inc()
            return _json(413, b'{"ok":false,"description":"request body too large"}')
        except TimeoutError:
            outcome.labels("timeout").inc()
            log.info("webhook body not received in time", extra={"timeout": body_timeout})
            return _json(408, b'{"ok":false,"description":"request body not received in time"}')
        except ClientDisconnect:
            # Nobody is left to answer: a hang-up mid-upload is the client's business.
            outcome.labels("client_gone").inc()
            log.info("webhook client hung up before sending the whole body")
            return _json(400, b'{"ok":false,"description":"client disconnected"}')
        try:
            # The text is what is stored; the bytes go now, before the parsed copy is made.
            payload = body.decode("utf-8")
            del body
            update = orjson.loads(payload)
        except (UnicodeDecodeError, orjson.JSONDecodeError):
            outcome.labels("bad_json").inc()
            return _json(400, b'{"ok":false,"description":"malformed JSON"}')
        row = classify_update(update)
        if row is None:
            outcome.labels("ignored").inc()
            if log.isEnabledFor(10):
                kinds = [k for k in update if k != "update_id"] if isinstance(update, dict) else []
                log.debug(
                    "ignored a webhook body that is not a handled update", extra={"keys": kinds}
                )
            return _json(200, _OK)
        current = batcher()
        if current is None:
            outcome.labels("unavailable").inc()
            return _json(503, b'{"ok":false,"description":"not ready"}')
        del update  # only the text waits for the commit
        try:
            await current.submit(NewUpdate(row.update_id, row.chat_key, row.kind, payload))
        except IngestUnavailable:
            outcome.labels("unavailable").inc()
            return _json(503, b'{"ok":false,"description":"update not stored, retry later"}')
        stored.inc()
        return _json(200, _OK)

    return webhook


def make_refusing_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """The webhook of a worker-only process: 503, nothing stored (Telegram retries)."""
    unavailable = metrics.webhook_requests.labels("unavailable")

    async def webhook(request: Request) -> Response:
        unavailable.inc()
        return _json(
            503, b'{"ok":false,"description":"this process does not take updates (role worker)"}'
        )

    return webhook
