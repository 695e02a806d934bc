"""Telegram-shaped media objects (PhotoSize list, Document, Video, Voice, ...) for files in the
store, with the fields Telegram sets for each kind (dimensions, duration, mime type, size)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sandbox.files import FileStore, StoredFile

KINDS = ("photo", "document", "video", "voice", "audio", "video_note", "animation", "sticker")
THUMB_SIDE = 90


@dataclass
class MediaSpec:
    """What the sender says about a file; unset values get Telegram-like defaults."""

    kind: str
    content: bytes | None = None
    size: int | None = None  # declared size when there is no content
    file_name: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    duration: int | None = None
    length: int | None = None
    emoji: str | None = None


def default_content(kind: str) -> bytes:
    """Stand-in bytes for a file sent without content (not a real image or sound)."""
    return (f"sandbox {kind} content {secrets.token_hex(4)}\n" * 64).encode()


def build(store: FileStore, spec: MediaSpec, reuse: StoredFile | None = None) -> Any:
    """The object for ``message[spec.kind]``; `reuse` = a file sent again by its file_id."""
    content = spec.content
    if content is None and spec.size is None and reuse is None:
        content = default_content(spec.kind)
    main = reuse or store.add(
        spec.kind, content, size=spec.size, mime_type=spec.mime_type, file_name=spec.file_name
    )
    if spec.kind == "photo":
        return _photo_sizes(store, main, spec)
    out: dict[str, Any] = {"file_id": main.file_id, "file_unique_id": main.file_unique_id}
    out.update(_fields(spec, main))
    out["file_size"] = main.file_size
    return out


def _photo_sizes(store: FileStore, main: StoredFile, spec: MediaSpec) -> list[dict[str, Any]]:
    width, height = spec.width or 800, spec.height or 800
    scale = THUMB_SIDE / max(width, height)
    thumb = store.add("photo", None, size=max(1, main.file_size // 10))
    small = {"width": max(1, round(width * scale)), "height": max(1, round(height * scale))}
    return [
        {"file_id": thumb.file_id, "file_unique_id": thumb.file_unique_id,
         "file_size": thumb.file_size, **small},
        {"file_id": main.file_id, "file_unique_id": main.file_unique_id,
         "file_size": main.file_size, "width": width, "height": height},
    ]  # fmt: skip


def _fields(spec: MediaSpec, stored: StoredFile) -> dict[str, Any]:
    kind = spec.kind
    out: dict[str, Any] = {}
    if kind in ("video", "animation"):
        out |= {"width": spec.width or 640, "height": spec.height or 360}
        out["duration"] = spec.duration if spec.duration is not None else 5
    elif kind in ("voice", "audio"):
        out["duration"] = spec.duration if spec.duration is not None else 3
    elif kind == "video_note":
        out |= {"length": spec.length or 240, "duration": spec.duration or 5}
    elif kind == "sticker":
        out |= {"type": "regular", "width": 512, "height": 512, "is_animated": False,
                "is_video": False, "emoji": spec.emoji or "🙂", "set_name": "SandboxStickers"}  # fmt: skip
        return out
    if stored.file_name and kind in ("document", "video", "audio", "animation"):
        out["file_name"] = stored.file_name
    if stored.mime_type and kind != "video_note":
        out["mime_type"] = stored.mime_type
    return out


def files_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file object inside a message (all photo sizes, the document, ...)."""
    out: list[dict[str, Any]] = []
    for kind in KINDS:
        value = message.get(kind)
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, dict))
        elif isinstance(value, dict):
            out.append(value)
    return out
