"""A small typed client for the sandbox's control API (``/sandbox/...``).

Tests and the project's CLI use it to play the user's side of a chat: create users, make them
write or press buttons, and read back what the bot did. Waiting is always polling with a
deadline, never a blind sleep.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, cast

import httpx

JSON = dict[str, Any]


class SandboxControl:
    """Synchronous control-API client; ``SandboxControl("http://127.0.0.1:8081")``."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _req(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, "/sandbox" + path, **kwargs)
        response.raise_for_status()
        return response.json()

    # the bot's side ---------------------------------------------------------------------
    def info(self) -> JSON:
        return cast(JSON, self._req("GET", "/info"))

    @property
    def token(self) -> str:
        return str(self.info()["token"])

    def bot_api_url(self, method: str = "") -> str:
        """``{base}/bot{token}/{method}``, the URL a bot client should call."""
        return f"{self.base_url}/bot{self.token}/{method}"

    def reset(self) -> None:
        self._req("POST", "/reset")

    # users ------------------------------------------------------------------------------
    def create_user(
        self,
        first_name: str | None = None,
        *,
        id: int | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> JSON:
        body = {
            "id": id,
            "first_name": first_name,
            "last_name": last_name,
            "username": username,
            "language_code": language_code,
        }
        return cast(JSON, self._req("POST", "/users", json=body))

    def users(self) -> list[JSON]:
        return cast(list[JSON], self._req("GET", "/users"))

    def block(self, user_id: int) -> JSON:
        return cast(JSON, self._req("POST", f"/users/{user_id}/block"))

    def unblock(self, user_id: int) -> JSON:
        return cast(JSON, self._req("POST", f"/users/{user_id}/unblock"))

    def create_group(self, title: str, members: list[int], id: int | None = None) -> JSON:
        body = {"title": title, "members": members, "id": id}
        return cast(JSON, self._req("POST", "/groups", json=body))

    # what users do ------------------------------------------------------------------------
    def send_text(self, user_id: int, text: str, *, chat_id: int | None = None) -> JSON:
        """The user writes `text`; returns ``{"message", "update"}``."""
        body = {"text": text, "chat_id": chat_id}
        return cast(JSON, self._req("POST", f"/users/{user_id}/messages", json=body))

    def send_command(self, user_id: int, command: str, args: str | None = None) -> JSON:
        body = {"command": command, "args": args}
        return cast(JSON, self._req("POST", f"/users/{user_id}/commands", json=body))

    def send_photo(self, user_id: int, caption: str | None = None) -> JSON:
        body = {"photo": True, "caption": caption}
        return cast(JSON, self._req("POST", f"/users/{user_id}/messages", json=body))

    def send_sticker(self, user_id: int, emoji: str = "😀") -> JSON:
        return cast(JSON, self._req("POST", f"/users/{user_id}/messages", json={"sticker": emoji}))

    def press_button(
        self, user_id: int, message_id: int, data: str, *, chat_id: int | None = None
    ) -> JSON:
        """Press the inline button with `data` under the bot's message `message_id`."""
        body = {"message_id": message_id, "data": data, "chat_id": chat_id}
        return cast(JSON, self._req("POST", f"/users/{user_id}/callback", json=body))

    def deliver_raw(self, update: JSON) -> JSON:
        """Queue `update` exactly as given (deliver twice to test duplicate handling)."""
        return cast(JSON, self._req("POST", "/updates", json=update))

    # reading back -----------------------------------------------------------------------
    def messages(self, chat_id: int) -> list[JSON]:
        return cast(list[JSON], self._req("GET", f"/chats/{chat_id}/messages"))

    def bot_messages(self, chat_id: int) -> list[JSON]:
        return [m for m in self.messages(chat_id) if m.get("from", {}).get("is_bot")]

    def chat(self, chat_id: int) -> JSON:
        return cast(JSON, self._req("GET", f"/chats/{chat_id}"))

    def calls(self, method: str | None = None, status: int | None = None) -> list[JSON]:
        params = {k: v for k, v in {"method": method, "status": status}.items() if v is not None}
        return cast(list[JSON], self._req("GET", "/calls", params=params))

    def clear_calls(self) -> None:
        self._req("DELETE", "/calls")

    def stats(self) -> JSON:
        return cast(JSON, self._req("GET", "/stats"))

    def deliveries(self) -> list[JSON]:
        return cast(list[JSON], self._req("GET", "/deliveries"))

    def callback_answers(self) -> list[JSON]:
        return cast(list[JSON], self._req("GET", "/callback-answers"))

    def pending_updates(self) -> list[JSON]:
        return cast(list[JSON], self._req("GET", "/updates/pending"))

    # faults and limits ------------------------------------------------------------------
    def inject_fault(
        self,
        method: str = "*",
        *,
        kind: str = "error",
        count: int | None = 1,
        status: int = 500,
        description: str | None = None,
        body: JSON | None = None,
        retry_after: int = 5,
        latency: float = 0.0,
        hang_seconds: float = 60.0,
    ) -> JSON:
        """kind: "error" (status/body), "flood" (429 retry_after), "latency" (seconds added),
        "drop" (connection cut mid-response) or "hang" (no answer for hang_seconds)."""
        payload = {
            "method": method,
            "kind": kind,
            "count": count,
            "status": status,
            "description": description,
            "body": body,
            "retry_after": retry_after,
            "latency": latency,
            "hang_seconds": hang_seconds,
        }
        return cast(JSON, self._req("POST", "/faults", json=payload))

    def clear_faults(self) -> None:
        self._req("DELETE", "/faults")

    def limits(self) -> JSON:
        return cast(JSON, self._req("GET", "/limits"))

    def set_limits(self, **changes: float) -> JSON:
        return cast(JSON, self._req("PUT", "/limits", json=changes))

    # waiting ----------------------------------------------------------------------------
    def wait_for_bot_messages(
        self, chat_id: int, count: int = 1, timeout: float = 10.0, interval: float = 0.05
    ) -> list[JSON]:
        """Poll until the bot has sent at least `count` messages to `chat_id`."""
        deadline = time.monotonic() + timeout
        found: list[JSON] = []
        while time.monotonic() < deadline:
            found = self.bot_messages(chat_id)
            if len(found) >= count:
                return found
            time.sleep(interval)
        raise TimeoutError(
            f"bot sent {len(found)} of {count} messages to chat {chat_id} within {timeout}s"
        )

    def wait_for_calls(
        self, method: str, count: int = 1, timeout: float = 10.0, interval: float = 0.05
    ) -> list[JSON]:
        """Poll until at least `count` calls of `method` were recorded."""
        deadline = time.monotonic() + timeout
        found: list[JSON] = []
        while time.monotonic() < deadline:
            found = self.calls(method)
            if len(found) >= count:
                return found
            time.sleep(interval)
        raise TimeoutError(f"{len(found)} of {count} {method} calls within {timeout}s")
