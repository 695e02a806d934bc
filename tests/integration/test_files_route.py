"""`GET /files/{file_id}` in-process: who may download, the 20 MB limit, Telegram's failures,
and the bot token in no answer, header or log line."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.logger import redactor
from app.main import create_app
from app.processing.files import FileLinks, attachments_of
from jsonlog import build_formatter

TOKEN = "123456:SECRET-bot-token-never-shown"
AGENT_KEY = "agent-key-for-files"
CONTENT = b"%PDF-1.4 hello file"
FILES: dict[str, Any] = {
    "small": {"file_size": len(CONTENT), "file_path": "documents/file_1.pdf"},
    "unsized": {"file_path": "photos/file_2.jpg"},
    "big": {"file_size": 25 * 1024 * 1024, "file_path": "videos/file_3.mp4"},
    "lying": {"file_size": 10, "file_path": "videos/file_4.mp4"},
}


def telegram(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path.endswith("/getFile"):
        file_id = json.loads(request.content)["file_id"]
        if file_id in FILES:
            return httpx.Response(
                200, json={"ok": True, "result": {"file_id": file_id, **FILES[file_id]}}
            )
        if file_id == "toobig":
            body = {"ok": False, "error_code": 400, "description": "Bad Request: file is too big"}
            return httpx.Response(400, json=body)
        if file_id == "down":
            return httpx.Response(
                502, json={"ok": False, "error_code": 502, "description": "Bad Gateway"}
            )
        if file_id == "flood":
            body = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
                    "parameters": {"retry_after": 7}}  # fmt: skip
            return httpx.Response(429, json=body)
        body = {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}
        return httpx.Response(400, json=body)
    if "/file/bot" in path:
        assert TOKEN in path  # the real file server URL needs the token, only there
        if path.endswith("file_4.mp4"):
            return httpx.Response(200, content=b"x" * 5000, headers={"content-length": "5000"})
        if path.endswith("file_2.jpg"):
            return httpx.Response(200, content=b"\xff\xd8jpeg")
        return httpx.Response(200, content=CONTENT, headers={"content-length": str(len(CONTENT))})
    return httpx.Response(200, json={"ok": True, "result": True})


class Files:
    def __init__(self, http: httpx.AsyncClient, links: FileLinks) -> None:
        self.http = http
        self.links = links

    async def get(self, file_id: str, **kw: Any) -> httpx.Response:
        url = self.links.url(file_id).removeprefix("http://gw")
        return await self.http.get(url, **kw)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **extra: Any) -> AsyncIterator[Files]:
    settings = Settings(
        _env_file=None,
        BOT_TOKEN=TOKEN,
        USER_SERVICE_BASE="http://127.0.0.1:9",
        DATABASE_URL=f"sqlite:///{tmp_path / 'gw.db'}",
        PROCESSING_ENABLED=False,
        AGENT_SERVICE_API_KEY=AGENT_KEY,
        FILES_BASE_URL="http://gw",
        FILES_MAX_BYTES=1024,
        LOG_LEVEL="DEBUG",
        **extra,
    )
    app = create_app(settings)
    gateway = app.state.gateway
    async with app.router.lifespan_context(app):
        mock = httpx.AsyncClient(transport=httpx.MockTransport(telegram))
        gateway.telegram.http = mock
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield Files(http, gateway.files)
        await mock.aclose()


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[Files]:
    async with running(tmp_path) as f:
        yield f


def _no_token(response: httpx.Response) -> None:
    assert TOKEN not in response.text
    assert "SECRET-bot-token" not in json.dumps(dict(response.headers))


async def test_a_signed_link_streams_the_file(files: Files) -> None:
    r = await files.get("small")
    assert r.status_code == 200 and r.content == CONTENT
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-length"] == str(len(CONTENT))
    assert r.headers["x-content-type-options"] == "nosniff"
    assert 'filename="file_1.pdf"' in r.headers["content-disposition"]
    _no_token(r)
    unsized = await files.get("unsized")
    assert unsized.status_code == 200 and unsized.headers["content-type"] == "image/jpeg"


async def test_who_may_download(files: Files) -> None:
    bare = await files.http.get("/files/small")
    assert bare.status_code == 401 and "X-API-Key" in bare.json()["detail"]
    with_key = await files.http.get("/files/small", headers={"X-API-Key": AGENT_KEY})
    assert with_key.status_code == 200 and with_key.content == CONTENT
    wrong_key = await files.http.get("/files/small", headers={"X-API-Key": "nope"})
    assert wrong_key.status_code == 403
    url = files.links.url("small").removeprefix("http://gw")
    other_file = url.replace("/files/small?", "/files/unsized?")  # the signature is per file
    assert (await files.http.get(other_file)).status_code == 403
    expired = files.links.url("small", now=time.time() - 2 * files.links.ttl)
    r = await files.http.get(expired.removeprefix("http://gw"))
    assert r.status_code == 403 and r.json()["detail"] == "link expired"
    tampered = url.replace("exp=", "exp=9")
    assert (await files.http.get(tampered)).status_code == 403
    assert (await files.http.get("/files/..%2Fetc?exp=1&sig=x")).status_code == 404


async def test_over_the_download_limit_is_a_clear_413(files: Files) -> None:
    big = await files.get("big")
    assert big.status_code == 413
    assert big.json()["detail"] == ("the file is 25.0 MB; Telegram lets bots download at most 1 KB")
    told = await files.get("toobig")  # Telegram's own refusal
    assert told.status_code == 413 and "20 MB" in told.json()["detail"]
    lying = await files.get("lying")  # getFile said 10 bytes, the server sends 5000
    assert lying.status_code == 413


async def test_telegram_failures_by_verdict(files: Files) -> None:
    gone = await files.get("unknown")
    assert gone.status_code == 404
    down = await files.get("down")
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    flood = await files.get("flood")
    assert flood.status_code == 503 and flood.headers["retry-after"] == "7"
    for r in (gone, down, flood):
        _no_token(r)


async def test_the_token_is_in_no_log_line(files: Files) -> None:
    """Every line as the gateway writes it (its JSON formatter and redactor), at DEBUG, where
    httpx logs each request URL, the file server's with the token in it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter(redactor))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        for file_id in ("small", "big", "unknown", "down", "lying", "toobig"):
            await files.get(file_id)
    finally:
        root.removeHandler(handler)
    lines = stream.getvalue()
    assert '"event": "file_served"' in lines and "/file/bot***" in lines
    assert TOKEN not in lines and "SECRET-bot-token" not in lines


def test_attachments_carry_a_gateway_url_not_the_token() -> None:
    links = FileLinks(bot_token=TOKEN, base_url="http://gw:8000", max_bytes=20 * 2**20)
    voice: dict[str, Any] = {"file_id": "AwAC", "file_unique_id": "v1", "duration": 3,
                             "mime_type": "audio/ogg", "file_size": 4000}  # fmt: skip
    update = {
        "update_id": 1,
        "message": {
            "message_id": 5,
            "chat": {"id": 1, "type": "private"},
            "from": {"id": 1},
            "caption": "listen",
            "voice": voice,
        },
    }
    [found] = attachments_of(update, links)
    url = found.pop("url")
    assert url.startswith("http://gw:8000/files/AwAC?exp=") and TOKEN not in url
    assert found == {"kind": "voice", "file_unique_id": "v1", "mime_type": "audio/ogg",
                     "size": 4000, "duration": 3, "caption": "listen", "message_id": 5}  # fmt: skip
    voice["file_size"] = 21 * 2**20
    assert attachments_of(update, links)[0]["downloadable"] is False
