"""Files with content: what users upload or the bot sends, downloadable like Telegram's.

Each file gets a ``file_id``, a ``file_unique_id`` and a ``file_path`` (``photos/file_3.jpg``)
that ``GET /file/bot<token>/<file_path>`` serves. Content lives on disk under the state folder
(0700) in files readable by the owner only (0600): it may be whatever a developer dropped into
the chat page. A file can also be *declared*: a size without content, so that a test can make a
file over the 20 MB download limit without allocating 20 MB (such a file downloads as zeros).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Telegram's folder and extension for each kind, as in real file_path values.
FOLDERS = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "video": ("videos", ".mp4"),
    "voice": ("voice", ".oga"),
    "audio": ("music", ".mp3"),
    "video_note": ("video_notes", ".mp4"),
    "animation": ("animations", ".mp4"),
    "sticker": ("stickers", ".webp"),
}
DEFAULT_MIME = {
    "video": "video/mp4",
    "voice": "audio/ogg",
    "audio": "audio/mpeg",
    "video_note": "video/mp4",
    "animation": "video/mp4",
    "document": "application/octet-stream",
    "photo": "image/jpeg",
    "sticker": "image/webp",
}
CHUNK = 64 * 1024


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str
    file_size: int
    file_path: str
    mime_type: str | None = None
    file_name: str | None = None
    disk: Path | None = None  # None: declared only (no content kept)

    def to_api(self) -> dict[str, Any]:
        """The ``File`` object that getFile returns."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.file_size,
            "file_path": self.file_path,
        }

    def to_control(self) -> dict[str, Any]:
        return {**self.to_api(), "kind": self.kind, "mime_type": self.mime_type,
                "file_name": self.file_name, "has_content": self.disk is not None}  # fmt: skip


class FileStore:
    """Owns the content folder; ``close()`` removes it when the sandbox made it itself."""

    def __init__(self, root: Path | None) -> None:
        self._own = root is None
        self.root = Path(tempfile.mkdtemp(prefix="sandbox-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.files: dict[str, StoredFile] = {}
        self.by_path: dict[str, StoredFile] = {}
        self.staged: dict[str, bytes] = {}
        self._numbers = itertools.count()

    def add(
        self,
        kind: str,
        content: bytes | None,
        *,
        size: int | None = None,
        mime_type: str | None = None,
        file_name: str | None = None,
        unique_id: str | None = None,
    ) -> StoredFile:
        """Store `content` (or declare `size` bytes without content) as a new file."""
        folder, ext = FOLDERS.get(kind, ("documents", ""))
        if file_name and "." in file_name and kind == "document":
            ext = "." + file_name.rsplit(".", 1)[1][:10]
        number = next(self._numbers)
        token = secrets.token_urlsafe(18)
        stored = StoredFile(
            file_id=f"sandbox-{kind}-{token}",
            file_unique_id=unique_id or secrets.token_urlsafe(9),
            kind=kind,
            file_size=len(content) if content is not None else (size or 0),
            file_path=f"{folder}/file_{number}{ext}",
            mime_type=mime_type or DEFAULT_MIME.get(kind),
            file_name=file_name,
        )
        if content is not None:
            stored.disk = self._write(f"{number}-{token[:8]}.bin", content)
        self.files[stored.file_id] = stored
        self.by_path[stored.file_path] = stored
        return stored

    def _write(self, name: str, content: bytes) -> Path:
        path = self.root / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask says
            out.write(content)
        return path

    def get(self, file_id: str) -> StoredFile | None:
        return self.files.get(file_id)

    def chunks(self, stored: StoredFile) -> Iterator[bytes]:
        """The content, in chunks (zeros for a declared-only file)."""
        if stored.disk is None:
            left = stored.file_size
            while left > 0:
                n = min(CHUNK, left)
                left -= n
                yield bytes(n)
            return
        with stored.disk.open("rb") as f:
            while block := f.read(CHUNK):
                yield block

    # uploads in flight: multipart bytes wait here until the method handler takes them
    def stage(self, content: bytes) -> str:
        key = secrets.token_hex(8)
        self.staged[key] = content
        return key

    def take_staged(self, key: str) -> bytes | None:
        return self.staged.pop(key, None)

    def reset(self) -> None:
        for stored in self.files.values():
            if stored.disk is not None:
                with contextlib.suppress(OSError):
                    stored.disk.unlink()
        self.files.clear()
        self.by_path.clear()
        self.staged.clear()

    def close(self) -> None:
        self.reset()
        if self._own:
            shutil.rmtree(self.root, ignore_errors=True)
