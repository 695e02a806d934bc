"""`POST /api/respond` and `GET /health`: the contract of docs/agent-service.md.

One endpoint answers both ways: JSON by default (what the gateway sends today), Server-Sent
Events when the body says `"stream": true` or the client accepts `text/event-stream`. A
streamed answer still gets a real status code when the turn fails before its first event
(503 with `Retry-After`, 502, 504): the handler waits for the first event before it commits
to a 200, so only failures after text has been sent become an `event: error`.

A client that closes the connection cancels the turn, in both modes: that is how the gateway
stops an answer (`/stop`, an interrupting message), and the model stops generating with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent_service.backends.base import AgentError, Delta, Final
from agent_service.schemas import ErrorOut, HealthOut, RespondIn, RespondOut
from agent_service.security import require_api_key
from agent_service.turns import Failure, Item, Turn

log = logging.getLogger("agent_service.api")

T = TypeVar("T")
#: Status for a response nobody will read (the client is gone); nginx's convention.
CLIENT_CLOSED = 499

SSE_DOC = (
    "With `stream: true` or `Accept: text/event-stream`: `event: delta` / "
    '`data: {"text": "..."}` repeated, then `event: done` / `data: {"reply": "...", '
    '"actions": [...]}`; a failure after the first delta is `event: error` / '
    '`data: {"message": "..."}`.'
)
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer: JSON, or Server-Sent Events. " + SSE_DOC,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    422: {"description": "The body is not a valid turn"},
    502: {"model": ErrorOut, "description": "The model's API refused the request or failed"},
    503: {
        "model": ErrorOut,
        "description": "The model is overloaded, rate limited or unreachable; see Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
    },
    504: {"model": ErrorOut, "description": "The model did not answer in AGENT_UPSTREAM_TIMEOUT"},
}

health_router = APIRouter()
router = APIRouter(
    prefix="/api",
    dependencies=[Depends(require_api_key)],
    responses={401: {"model": ErrorOut, "description": "Missing or wrong X-API-Key"}},
)


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """`await work`, unless the client disconnects first (then ClientGone; `work` is cancelled)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone


def error_response(error: AgentError) -> JSONResponse:
    return JSONResponse({"detail": error.reason}, status_code=error.status, headers=error.headers())


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _encode(item: Item) -> bytes:
    if isinstance(item, Delta):
        return sse("delta", {"text": item.text})
    if isinstance(item, Final):
        return sse("done", {"reply": item.reply, "actions": item.actions})
    return sse("error", {"message": item.error.reason})


@health_router.get("/health", response_model=HealthOut, tags=["health"])
async def health(request: Request) -> HealthOut:
    return HealthOut(status="ok", backend=request.app.state.backend.name)


@router.post("/respond", response_model=RespondOut, responses=RESPONSES)
async def respond(
    request: Request,
    body: RespondIn,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Answer one turn of a chat (the gateway's call)."""
    stream = body.stream or "text/event-stream" in (accept or "").lower()
    state = request.app.state
    turn = Turn(state.backend, body, stream=stream, timeout=state.timeout, registry=state.turns)
    started = time.monotonic()
    audit: dict[str, Any] = {"chat_id": body.chat_id, "kind": body.kind, "stream": stream}
    try:
        first = await until_disconnect(request, turn.result() if not stream else turn.next())
    except ClientGone:
        turn.cancel()
        log.info("turn cancelled: the client closed the connection", extra=audit)
        return Response(status_code=CLIENT_CLOSED)
    if isinstance(first, Failure):
        turn.cancel()
        log.warning(
            "turn failed",
            extra={**audit, "status": first.error.status, "reason": first.error.reason},
        )
        return error_response(first.error)
    if not stream:
        assert isinstance(first, Final)
        log.info(
            "turn answered",
            extra={
                **audit,
                "ms": round((time.monotonic() - started) * 1000),
                "chars": len(first.reply),
            },
        )
        return JSONResponse({"reply": first.reply, "actions": first.actions})
    log.info(
        "turn streaming",
        extra={**audit, "first_event_ms": round((time.monotonic() - started) * 1000)},
    )
    return StreamingResponse(
        _stream(turn, first, audit, started),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    turn: Turn, first: Item, audit: dict[str, Any], started: float
) -> AsyncIterator[bytes]:
    outcome = "cancelled"
    try:
        async for item in turn.events(first):
            yield _encode(item)
            if isinstance(item, Final):
                outcome = "answered"
            elif isinstance(item, Failure):
                outcome = "failed: " + item.error.reason
    finally:
        # Runs on a client disconnect too (Starlette cancels this generator); only logging
        # here, no awaiting: `turn.events` has cancelled the turn already.
        log.info(
            "turn stream ended",
            extra={**audit, "outcome": outcome, "ms": round((time.monotonic() - started) * 1000)},
        )
