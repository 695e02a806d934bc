"""A stand-in Agent Service for integration tests, run as a real uvicorn process.

`POST /api/respond` answers `{"reply": "Agent: <text>"}`; a text containing "buttons" also gets
`actions` (two callback buttons, one with data longer than 64 bytes, and a URL button).
Behaviour is switched at run time with `POST /control {"mode": ..., "delay": ...}`:
`echo` (default), `slow` (sleep `delay` seconds first), `error` (HTTP 500), `bad_json`.
`GET /requests` returns every request body received, in order, so tests can check what the
gateway sent (history context, callback data as text...).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support.servers import ServerProcess

LONG_DATA = "answer:" + "x" * 80  # longer than Telegram's 64-byte callback_data limit

state: dict[str, Any] = {"mode": "echo", "delay": 0.0, "requests": []}


async def respond(request: Request) -> Response:
    body = await request.json()
    state["requests"].append(body)
    mode = state["mode"]
    if mode == "slow":
        await asyncio.sleep(float(state["delay"]))
    if mode == "error":
        return JSONResponse({"detail": "agent exploded"}, status_code=500)
    if mode == "bad_json":
        return PlainTextResponse("not json")
    text = str(body.get("text", ""))
    reply: dict[str, Any] = {"reply": f"Agent: {text}"}
    if "buttons" in text:
        reply["actions"] = [
            {"text": "Yes", "data": "answer:yes", "row": 1},
            {"text": "Long", "data": LONG_DATA, "row": 1},
            {"text": "Docs", "url": "https://example.com/docs", "row": 2},
        ]
    return JSONResponse(reply)


async def control(request: Request) -> Response:
    body = await request.json()
    state["mode"] = body.get("mode", state["mode"])
    state["delay"] = float(body.get("delay", state["delay"]))
    if body.get("clear"):
        state["requests"] = []
    return JSONResponse({"mode": state["mode"], "delay": state["delay"]})


async def requests_(_: Request) -> Response:
    return JSONResponse(state["requests"])


async def health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/api/respond", respond, methods=["POST"]),
        Route("/control", control, methods=["POST"]),
        Route("/requests", requests_),
        Route("/health", health),
    ]
)


def agent_process() -> ServerProcess:
    """A not-yet-started agent stand-in process."""
    return ServerProcess("tests.support.agent_stub:app", name="agent_stub")
