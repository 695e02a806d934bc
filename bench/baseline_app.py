"""The ceiling to compare against: a bare Starlette endpoint that only parses the JSON body.

Bare Starlette, not FastAPI: FastAPI's request handling (dependency resolution, response
validation) is already a cost the gateway chose not to pay on its webhook route, so a FastAPI
baseline would flatter the gateway's share.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def webhook(request: Request) -> JSONResponse:
    await request.json()
    return JSONResponse({"ok": True})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[Route("/webhook/telegram", webhook, methods=["POST"]), Route("/health", health)]
)
