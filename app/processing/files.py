"""Files people send, as the agent sees them: `attachments` with a URL on the gateway.

Telegram's own download URL contains the bot token (``/file/bot<token>/<path>``), so it must
never reach the agent. Each attachment carries instead a URL of the gateway,
``{FILES_BASE_URL}/files/<file_id>?exp=<unix time>&sig=<HMAC>``: `GET /files/{file_id}`
(`app/routes/files.py`) checks the signature, asks Telegram `getFile` at that moment, and
streams the content through. A signed URL rather than a header because an agent often hands the
URL on (to a vision model, say) and cannot add headers there; the signature covers the file id
and the expiry, so a URL is good for that one file for `FILES_URL_TTL` seconds. The agent may
also fetch any file with its own key (`X-API-Key: AGENT_SERVICE_API_KEY`).

The signing key is `FILES_SIGNING_KEY`, or derived from the bot token (HMAC-SHA256 of a fixed
label: one-way, so nothing about the token can be learnt from it), so every replica of a bot
signs and checks alike without more configuration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import Any
from urllib.parse import quote

from app.utils import message_of

#: The media a message can carry that reach the agent as attachments.
ATTACHMENT_KINDS = ("photo", "document", "video", "animation", "audio", "voice", "video_note")
#: What Telegram stores each kind as when the message does not say.
_DEFAULT_MIME = {
    "photo": "image/jpeg",
    "voice": "audio/ogg",
    "video_note": "video/mp4",
    "video": "video/mp4",
    "animation": "video/mp4",
    "audio": "audio/mpeg",
}
#: Telegram file ids are URL-safe base64; anything else in the path is not a file id.
FILE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,512}$")
_LABEL = b"messaging-gateway: signed file URLs v1"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class FileLinks:
    """Signs and checks the gateway's file URLs (see the module docstring)."""

    def __init__(
        self,
        *,
        bot_token: str,
        signing_key: str | None = None,
        base_url: str = "",
        ttl: float = 3600,
        max_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        secret = signing_key.encode() if signing_key else bot_token.encode()
        self._key = hmac.new(secret, _LABEL, hashlib.sha256).digest()
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"FileLinks(base_url={self.base_url!r})"

    def signature(self, file_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{file_id}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def url(self, file_id: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl)
        sig = self.signature(file_id, expires)
        return f"{self.base_url}/files/{quote(file_id, safe='')}?exp={expires}&sig={sig}"

    def check(self, file_id: str, expires: str | None, sig: str | None) -> str | None:
        """None when the signed URL is valid now, else why not (for the 403's detail)."""
        if not expires or not sig:
            return "missing signature"
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            return "invalid signature"
        if not hmac.compare_digest(sig.encode(), self.signature(file_id, int(expires)).encode()):
            return "invalid signature"
        if int(expires) < time.time():
            return "link expired"
        return None


def media_file(message: Any) -> dict[str, Any] | None:
    """The file a message carries, with what Telegram says about it, or None."""
    msg = message if isinstance(message, dict) else {}
    for kind in ATTACHMENT_KINDS:
        value = msg.get(kind)
        if kind == "photo":
            if not isinstance(value, list):
                continue
            sizes = [s for s in value if isinstance(s, dict) and isinstance(s.get("file_id"), str)]
            if not sizes:
                continue
            obj = max(
                sizes, key=lambda s: (_int(s.get("width")) or 0) * (_int(s.get("height")) or 0)
            )
        elif isinstance(value, dict) and isinstance(value.get("file_id"), str):
            obj = value
        else:
            continue
        length = _int(obj.get("length"))  # video notes are square
        found: dict[str, Any] = {
            "kind": kind,
            "file_id": obj["file_id"],
            "file_unique_id": obj.get("file_unique_id"),
            "mime_type": obj.get("mime_type") or _DEFAULT_MIME.get(kind),
            "size": _int(obj.get("file_size")),
            "width": _int(obj.get("width")) or length,
            "height": _int(obj.get("height")) or length,
            "duration": _int(obj.get("duration")),
            "file_name": obj.get("file_name") if isinstance(obj.get("file_name"), str) else None,
        }
        return found
    return None


def attachments_of(update: Any, links: FileLinks) -> list[dict[str, Any]]:
    """The `attachments` entries of one update's message (at most one file per message).

    Each: kind, mime_type, size, width/height, duration, file_name, file_unique_id, caption,
    message_id, url; `downloadable: false` when the file is over the download limit (its URL
    then answers 413). Fields Telegram did not give are left out.
    """
    msg = message_of(update)
    found = media_file(msg)
    if found is None:
        return []
    file_id = found.pop("file_id")
    caption = msg.get("caption")
    found["caption"] = caption if isinstance(caption, str) and caption else None
    found["message_id"] = _int(msg.get("message_id"))
    found["url"] = links.url(file_id)
    size = found.get("size")
    if isinstance(size, int) and size > links.max_bytes:
        found["downloadable"] = False
    return [{k: v for k, v in found.items() if v is not None}]
