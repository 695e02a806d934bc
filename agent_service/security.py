"""The optional shared key (`X-API-Key` = `AGENT_SERVICE_API_KEY`) guarding every `/api` route.

Enforced by an ASGI middleware, before routing or body parsing, so a caller without the key
learns nothing (not even whether its JSON was valid); the FastAPI dependency repeats the check
and puts the security scheme into the OpenAPI document. Compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import orjson
from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = "X-API-Key"
UNAUTHORIZED_DETAIL = "missing or invalid X-API-Key"

api_key_header = APIKeyHeader(
    name=HEADER,
    auto_error=False,
    description="Required when the service runs with AGENT_SERVICE_API_KEY set",
)


def key_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison: response timing does not tell how much of a guess was right."""
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


async def require_api_key(
    request: Request, presented: Annotated[str | None, Security(api_key_header)]
) -> None:
    expected: str | None = request.app.state.api_key
    if expected is not None and not key_matches(expected, presented):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED_DETAIL)


class ApiKeyMiddleware:
    """Answer 401 to any `/api` request without the right key."""

    def __init__(self, app: ASGIApp, api_key: str, prefix: str = "/api") -> None:
        self.app = app
        self.api_key = api_key
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == self.prefix or path.startswith(self.prefix + "/")):
            presented = None
            for name, value in scope.get("headers", []):
                if name.lower() == b"x-api-key":
                    presented = value.decode("latin-1")
                    break
            if not key_matches(self.api_key, presented):
                body = orjson.dumps({"detail": UNAUTHORIZED_DETAIL})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
