"""Sending media (by upload, by file_id, by URL) and downloading files (getFile)."""

from __future__ import annotations

from typing import Any

from sandbox.botapi import BotApi, Handler, handler, parsed_text
from sandbox.errors import bad_request
from sandbox.files import StoredFile
from sandbox.formatting import utf16_len
from sandbox.media import MediaSpec, build

SENDABLE = ("photo", "document", "sticker", "video", "audio", "voice", "animation", "video_note")


def _spec(api: BotApi, kind: str, value: Any, params: dict[str, Any]) -> tuple[MediaSpec, Any]:
    """A multipart upload keeps its bytes; a known file_id is the same file sent again; a URL
    or an unknown file_id becomes a new stand-in file (the sandbox fetches nothing)."""
    spec = MediaSpec(kind, width=params.get("width"), height=params.get("height"),
                     duration=params.get("duration"), length=params.get("length"),
                     emoji=params.get("emoji"))  # fmt: skip
    reuse: StoredFile | None = None
    if isinstance(value, dict) and "staged" in value:
        spec.content = api.sandbox.files.take_staged(str(value["staged"])) or b""
        spec.file_name = value.get("upload") or None
        mime = value.get("mime_type")
        spec.mime_type = mime if kind == "document" and mime else None
    elif isinstance(value, str):
        found = api.sandbox.files.get(value)
        if found is not None and found.kind == kind:
            reuse = found
        elif not value.startswith(("http://", "https://")) and found is not None:
            raise bad_request("wrong file identifier/HTTP URL specified")
    return spec, reuse


def _media_handler(kind: str) -> Handler:
    async def send_media(api: BotApi, params: dict[str, Any]) -> Any:
        chat = api.chat(params["chat_id"], params)
        caption, entities = parsed_text(params.get("caption") or "", params, "caption_entities")
        if utf16_len(caption) > 1024:
            raise bad_request("message caption is too long")
        spec, reuse = _spec(api, kind, params[kind], params)
        api.flood_check(chat)
        msg = api.base_message(chat, params)
        msg[kind] = build(api.sandbox.files, spec, reuse)
        if caption and kind not in ("sticker", "video_note"):
            msg["caption"] = caption
            if entities:
                msg["caption_entities"] = entities
        return api.finish(chat, msg, params)

    return send_media


for _kind in SENDABLE:
    handler("send" + "".join(p.capitalize() for p in _kind.split("_")))(_media_handler(_kind))


@handler("getFile")
async def get_file(api: BotApi, params: dict[str, Any]) -> Any:
    stored = api.sandbox.files.get(params["file_id"])
    if stored is None:
        raise bad_request("invalid file_id")
    if stored.file_size > api.sandbox.config.max_download_size:
        raise bad_request("file is too big")
    return stored.to_api()
