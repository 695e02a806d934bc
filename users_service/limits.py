"""A bound on request bodies, enforced before anything parses them.

Without it the service read and parsed any body a client cared to send (40 MB in the probe).
`BodyLimitMiddleware` refuses a declared `Content-Length` over the limit without reading a byte,
and otherwise reads the body itself, counting, so that a chunked body is cut off at the limit
too. Only a body known to fit is handed to the application, in one message; the JSON parser
never sees more than `MAX_BODY_BYTES`.

Reading the body here also puts the one place that learns about a client hanging up mid-upload
in our hands: that is the client's business, logged at INFO, not an error with a traceback.
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("users_service")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:  # the HTTP server refuses these before we are called
                return None
    return None


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`; the application receives the body whole, or not at all.

    The rest of a refused body is left to the HTTP server, which discards it and keeps the
    connection usable, so the client reliably reads the 413 instead of a reset.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                log.info(
                    "client disconnected during upload: %s %s after %d bytes",
                    scope.get("method", ""),
                    scope.get("path", ""),
                    size,
                )
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect can come

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        detail = f"request body is larger than {self.max_bytes} bytes (MAX_BODY_BYTES)"
        payload = orjson.dumps({"detail": detail})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
