"""Read Bot API parameters the ways Telegram accepts them: query string, JSON,
form-urlencoded and multipart bodies (query and body are merged, body wins).

Multipart is parsed with the standard library's ``email`` package so that the sandbox needs
no extra dependency; an uploaded file becomes ``{"upload": filename, "size", "mime_type",
"content": bytes}``, whose bytes the Bot API endpoint moves into the file store before the call
is recorded.
"""

from __future__ import annotations

from email.message import Message as MimeMessage
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request

from sandbox.errors import bad_request


async def read_params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("application/json"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise bad_request("can't parse JSON encoded request body") from None
        if not isinstance(data, dict):
            raise bad_request("JSON encoded request body must be an object")
        params.update(data)
    elif ctype.startswith("multipart/form-data"):
        params.update(_multipart(request.headers["content-type"], body))
    else:  # form-urlencoded, or no content type at all (Telegram is lenient here too)
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = BytesParser(policy=HTTP).parsebytes(head + body)
    out: dict[str, Any] = {}
    for part in msg.iter_parts() if msg.is_multipart() else []:
        assert isinstance(part, MimeMessage)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            out[name] = {
                "upload": filename,
                "size": len(data),
                "mime_type": part.get_content_type(),
                "content": data,
            }
        else:
            out[name] = data.decode(part.get_content_charset() or "utf-8", "replace")
    return out
