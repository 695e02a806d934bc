"""``create_app``: the Bot API emulator, the control API, the live event stream and the web
chat page, in one Starlette/FastAPI app sharing one `Sandbox` state."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from sandbox.botapi import BotApi
from sandbox.config import SandboxConfig
from sandbox.control import build_router
from sandbox.security import OriginGuard
from sandbox.spec import load_spec
from sandbox.state import Sandbox
from sandbox.webhook import run_webhook_worker

STATIC = Path(__file__).parent / "static"


def create_app(config: SandboxConfig | None = None) -> FastAPI:
    config = config or SandboxConfig()
    sandbox = Sandbox(config)
    api = BotApi(sandbox, load_spec())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(run_webhook_worker(sandbox))
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            sandbox.files.close()

    app = FastAPI(title="Telegram sandbox", lifespan=lifespan, docs_url="/sandbox/docs")
    app.state.sandbox = sandbox
    app.add_middleware(
        OriginGuard, allowed_hosts=config.allowed_hosts, allowed_origins=config.allowed_origins
    )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_api_route(
        "/bot{token}/{method}", api.endpoint, methods=["GET", "POST"], include_in_schema=False
    )
    app.include_router(build_router(sandbox))

    @app.get("/file/bot{token}/{file_path:path}", include_in_schema=False)
    async def download(token: str, file_path: str) -> Any:
        return _download(sandbox, token, file_path)

    @app.websocket("/sandbox/events")
    async def events(ws: WebSocket) -> None:
        await _stream_events(sandbox, ws)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(404)
    async def not_found(request: Any, exc: Any) -> JSONResponse:
        detail = getattr(exc, "detail", "Not Found")
        return JSONResponse({"detail": detail}, status_code=404)

    return app


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) client frames so that a disconnect is noticed."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


def _download(sandbox: Sandbox, token: str, file_path: str) -> Any:
    """File content by the file_path getFile gave, as api.telegram.org serves it."""
    if not secrets.compare_digest(token.encode(), sandbox.config.bot_token.encode()):
        return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
    stored = sandbox.files.by_path.get(file_path)
    if stored is None or stored.file_size > sandbox.config.max_download_size:
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
    headers = {"Content-Length": str(stored.file_size)}
    media_type = stored.mime_type or "application/octet-stream"
    return StreamingResponse(sandbox.files.chunks(stored), media_type=media_type, headers=headers)


async def _stream_events(sandbox: Sandbox, ws: WebSocket) -> None:
    """Live transcript changes for the page; closes cleanly on server shutdown. (The Origin
    check happened before: OriginGuard refuses the handshake of other sites' pages.)"""
    await ws.accept()
    queue = sandbox.events.subscribe()
    reader = asyncio.create_task(_drain(ws))
    try:
        await ws.send_json({"type": "hello", "bot": sandbox.bot_user()})
        while not reader.done():
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            await ws.send_json(getter.result())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sandbox.events.unsubscribe(queue)
        reader.cancel()
