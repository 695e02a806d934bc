"""A stand-in Agent Service for integration tests, run as a real uvicorn process.

`POST /api/respond` answers `{"reply": "Agent: <text>"}`; a text containing "buttons" also gets
`actions` (two callback buttons, one with data longer than 64 bytes, and a URL button).
Behaviour is switched at run time with `POST /control {"mode": ..., "delay": ...}`:
`echo` (default), `slow` (sleep `delay` seconds first), `error` (HTTP 500), `bad_json`, and
`stream`: a request with `"stream": true` gets Server-Sent Events, the reply word by word
(`words` words after the echo, one every `delay` seconds), then `done` (other requests get
the same reply as JSON, after the same generation time); `GET /streams` says how each stream
ended: "done", or "closed" when the client hung up first (how the gateway cancels a turn).
`GET /requests` returns every request body received, in order, so tests can check what the
gateway sent (history context, callback data as text, a turn's `parts` and `attachments`...).

A turn of several messages is answered ``"Agent: <part> | <part> ..."`` (each part's own text),
so a reply names every message it answers. With ``POST /control {"download": true}`` the stand-in
also fetches every attachment through the URL the gateway gave it, as an agent would, and
records what it got (`GET /downloads`: status, size, SHA-256, type, the refusal's detail).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import ServerProcess

LONG_DATA = "answer:" + "x" * 80  # longer than Telegram's 64-byte callback_data limit

state: dict[str, Any] = {
    "mode": "echo",
    "delay": 0.0,
    "words": 20,
    "requests": [],
    "streams": [],
    "download": False,
    "downloads": [],
}


def _words(text: str) -> list[str]:
    """The streamed reply: the echo, then numbered words, so a test can see how far it got."""
    return [f"Agent: {text}", *(f" w{n}" for n in range(1, int(state["words"]) + 1))]


async def _stream(text: str) -> AsyncIterator[str]:
    pieces = _words(text)
    outcome = "closed"
    try:
        for piece in pieces:
            yield f"event: delta\ndata: {json.dumps({'text': piece})}\n\n"
            await asyncio.sleep(float(state["delay"]))
        yield f"event: done\ndata: {json.dumps({'reply': ''.join(pieces), 'actions': []})}\n\n"
        outcome = "done"
    finally:
        state["streams"].append({"text": text, "outcome": outcome})


async def _download(attachments: Any) -> list[str]:
    """Fetch each attachment's URL (the gateway's); one line per file for the reply."""
    got: list[str] = []
    if not isinstance(attachments, list):
        return got
    async with httpx.AsyncClient(timeout=10) as http:
        for item in attachments:
            url = item.get("url") if isinstance(item, dict) else None
            if not isinstance(url, str):
                continue
            response = await http.get(url)
            record = {
                "url": url,
                "status": response.status_code,
                "size": len(response.content),
                "sha256": hashlib.sha256(response.content).hexdigest(),
                "content_type": response.headers.get("content-type"),
                "headers": dict(response.headers),
                "detail": None if response.is_success else response.json().get("detail"),
            }
            state["downloads"].append(record)
            got.append(f"{item.get('kind')} {response.status_code} {record['size']} bytes")
    return got


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
    if mode == "stream":
        if body.get("stream"):
            return StreamingResponse(_stream(text), media_type="text/event-stream")
        pieces = _words(text)  # the same generation time, all of it before the answer
        await asyncio.sleep(float(state["delay"]) * len(pieces))
        return JSONResponse({"reply": "".join(pieces)})
    parts = body.get("parts")
    said = " | ".join(str(p.get("text")) for p in parts) if isinstance(parts, list) else text
    reply: dict[str, Any] = {"reply": f"Agent: {said}"}
    if state["download"] and body.get("attachments"):
        reply["reply"] += "\n" + "\n".join(await _download(body["attachments"]))
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
    state["download"] = bool(body.get("download", state["download"]))
    state["words"] = int(body.get("words", state["words"]))
    if body.get("clear"):
        state["requests"] = []
        state["downloads"] = []
        state["streams"] = []
    return JSONResponse({"mode": state["mode"], "delay": state["delay"]})


async def requests_(_: Request) -> Response:
    return JSONResponse(state["requests"])


async def streams(_: Request) -> Response:
    return JSONResponse(state["streams"])


async def downloads(_: Request) -> Response:
    return JSONResponse(state["downloads"])


async def health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/api/respond", respond, methods=["POST"]),
        Route("/control", control, methods=["POST"]),
        Route("/requests", requests_),
        Route("/downloads", downloads),
        Route("/streams", streams),
        Route("/health", health),
    ]
)


def agent_process() -> ServerProcess:
    """A not-yet-started agent stand-in process."""
    return ServerProcess("tests.support.agent_stub:app", name="agent_stub")
