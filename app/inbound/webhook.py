"""`POST /webhook/telegram`: authenticate, parse, store durably, answer.

A raw Starlette endpoint rather than a FastAPI body model: the route is the gateway's hot path,
and per-request model validation costs more than the rest of the request together. The checks
it does are exactly the ones that decide the HTTP answer:

- secret header mismatch → 403, nothing stored;
- body too large → 413; not JSON → 400;
- JSON that is not an update, or an update kind the gateway does not handle → 200, ignored;
- stored (or already stored: a redelivery) → 200 `{"ok": true}`;
- could not be stored → 503, so Telegram delivers it again later. Never a 200 for a lost update.

A worker-only process (`GATEWAY_ROLE=worker`) stores nothing: `make_refusing_endpoint` answers
every POST with 503, so a misrouted update is redelivered to an ingesting process, not lost.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.errors import IngestUnavailable
from app.inbound.ingest import IngestBatcher, classify_update
from app.logger import get_logger
from app.metrics import Metrics
from app.storage.inbox import NewUpdate

log = get_logger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 (a header name)
_OK = b'{"ok":true}'


def _json(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def make_webhook_endpoint(
    *,
    secret: str | None,
    max_body: int,
    batcher: Callable[[], IngestBatcher | None],
    metrics: Metrics,
) -> Callable[[Request], Awaitable[Response]]:
    """Build the endpoint; `batcher` returns the running batcher (None before start-up)."""
    secret_bytes = secret.encode() if secret else None
    outcome = metrics.webhook_requests
    stored = outcome.labels("stored")  # bound once: .labels() costs ~10 us per call

    async def webhook(request: Request) -> Response:
        if secret_bytes is not None:
            given = request.headers.get(SECRET_HEADER, "").encode()
            if not hmac.compare_digest(given, secret_bytes):
                outcome.labels("forbidden").inc()
                log.warning("webhook call with a wrong or missing secret token")
                return _json(403, b'{"ok":false,"description":"forbidden"}')
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            outcome.labels("too_large").inc()
            return _json(413, b'{"ok":false,"description":"request body too large"}')
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                outcome.labels("too_large").inc()
                return _json(413, b'{"ok":false,"description":"request body too large"}')
        try:
            update = orjson.loads(body)
        except orjson.JSONDecodeError:
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
        try:
            await current.submit(
                NewUpdate(row.update_id, row.chat_key, row.kind, body.decode("utf-8"))
            )
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
