"""`GET /files/{file_id}`: a file someone sent the bot, for the agent, without the bot token.

Telegram's download URL contains the bot token, so the agent never gets it: attachments carry
a link to this route instead (`app.processing.files`). The route

- authenticates the caller: a signed link (`exp`, `sig`: that file, until it expires), or the
  agent's own key in `X-API-Key` (`AGENT_SERVICE_API_KEY`, when one is configured);
  nothing else (401 without either, 403 for a wrong or expired one);
- asks Telegram `getFile` at that moment (file paths are valid for an hour, so none is stored);
- refuses a file over Telegram's download limit for bots (`FILES_MAX_BYTES`, 20 MB) with 413
  and a sentence saying so, before downloading anything;
- streams the content through (never a redirect: its target would hold the token), with the
  type guessed from Telegram's file path, `Content-Length` when Telegram gives one, and at most
  the limit's worth of bytes.

What a Telegram failure means comes from `app.errors.classify`: an outage or a flood wait is a
503 (with `Retry-After`), a file Telegram does not know a 404, anything else a 502. No answer,
header or log line contains the token: the details are fixed sentences, not Telegram's words.
"""

from __future__ import annotations

import contextlib
import hmac
import mimetypes
import posixpath
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Header, HTTPException, Path, Query
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from app.errors import FileTooBig, TelegramClientError, Verdict, classify, retry_after
from app.gateway import Gateway
from app.logger import get_logger
from app.processing.files import FILE_ID_RE
from app.routes.guard import AdminGuard

log = get_logger(__name__)

CHUNK = 64 * 1024


def _refusal(exc: Exception) -> HTTPException:
    """The HTTP answer for a failure of getFile or the download (see the module docstring)."""
    verdict = classify(exc)
    if verdict is Verdict.TOO_BIG:
        detail = (
            str(exc)
            if isinstance(exc, FileTooBig)
            else ("the file is larger than Telegram lets bots download (20 MB)")
        )
        return HTTPException(413, detail)
    if verdict in (Verdict.OUTAGE, Verdict.RATE_LIMITED):
        wait = retry_after(exc) or 5.0
        return HTTPException(
            503,
            "Telegram is not answering right now; try again later",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    if verdict is Verdict.PERMANENT:
        return HTTPException(404, "Telegram does not know this file (or no longer has it)")
    return HTTPException(502, "Telegram refused to hand over the file")


def router(gateway: Gateway, require_admin: AdminGuard) -> APIRouter:
    """The agent's file downloads (`require_admin` is unused: the agent has its own checks)."""
    r = APIRouter(tags=["files"])
    links = gateway.files
    agent_key = gateway.settings.AGENT_SERVICE_API_KEY
    max_bytes = gateway.settings.FILES_MAX_BYTES

    def authorize(file_id: str, exp: str | None, sig: str | None, key: str | None) -> None:
        if key is not None:
            if agent_key and hmac.compare_digest(key.encode(), agent_key.encode()):
                return
            raise HTTPException(403, "invalid X-API-Key")
        if exp is None and sig is None:
            raise HTTPException(401, "a signed link (exp and sig) or X-API-Key is required")
        problem = links.check(file_id, exp, sig)
        if problem is not None:
            raise HTTPException(403, problem)

    @r.get("/files/{file_id}")
    async def download(
        file_id: Annotated[str, Path(min_length=1, max_length=512)],
        exp: Annotated[str | None, Query(max_length=20)] = None,
        sig: Annotated[str | None, Query(max_length=100)] = None,
        x_api_key: Annotated[str | None, Header(max_length=512)] = None,
    ) -> StreamingResponse:
        if not FILE_ID_RE.match(file_id):
            raise HTTPException(404, "not a Telegram file id")
        authorize(file_id, exp, sig, x_api_key)
        telegram = gateway.telegram
        try:
            result: Any = (await telegram.get_file(file_id)).get("result")
            info = result if isinstance(result, dict) else {}
            size = info.get("file_size")
            if isinstance(size, int) and size > max_bytes:
                raise FileTooBig(size, max_bytes)
            path = info.get("file_path")
            if not isinstance(path, str) or not path:
                raise HTTPException(502, "Telegram gave no path to download the file from")
            stack = contextlib.AsyncExitStack()
            try:
                upstream = await stack.enter_async_context(telegram.download(path))
            except BaseException:
                await stack.aclose()
                raise
        except (TelegramClientError, FileTooBig) as exc:
            log.info(
                "file not served",
                extra={"event": "file_refused", "verdict": classify(exc).value},
            )
            raise _refusal(exc) from None
        length = upstream.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await stack.aclose()
            raise _refusal(FileTooBig(int(length), max_bytes))
        name = posixpath.basename(path)
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{name}"',
        }
        if length is not None and length.isdigit():
            headers["Content-Length"] = length
        log.info("file served", extra={"event": "file_served", "size": size, "type": media_type})
        return StreamingResponse(
            _body(upstream, max_bytes),
            media_type=media_type,
            headers=headers,
            background=BackgroundTask(stack.aclose),
        )

    return r


async def _body(upstream: httpx.Response, limit: int) -> AsyncIterator[bytes]:
    """The file's bytes, at most `limit` of them; a broken download ends the body early."""
    sent = 0
    try:
        async for chunk in upstream.aiter_bytes(CHUNK):
            sent += len(chunk)
            if sent > limit:
                log.warning("file larger than announced; cut at the limit", extra={"limit": limit})
                return
            yield chunk
    except httpx.HTTPError as exc:
        log.warning("file download cut off", extra={"error": exc.__class__.__name__})
