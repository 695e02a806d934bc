"""A small typed client for the sandbox's control API (``/sandbox/...``).

Tests and the project's CLI use it to play the user's side of a chat: create users, make them
write or press buttons, and read back what the bot did. Waiting is always polling with a
deadline, never a blind sleep.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
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

    def create_group(
        self,
        title: str,
        members: list[int],
        id: int | None = None,
        *,
        type: str = "group",
        username: str | None = None,
    ) -> JSON:
        """A group (or ``type="supergroup"``, ids -100...) with these simulated users."""
        body = {"title": title, "members": members, "id": id, "type": type, "username": username}
        return cast(JSON, self._req("POST", "/groups", json=body))

    # what users do ------------------------------------------------------------------------
    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        reply_to: int | None = None,
        mention_bot: bool = False,
        message_id: int | None = None,
    ) -> JSON:
        """The user writes `text` (in `chat_id`, a group, if given); returns
        ``{"message", "update"}``. `reply_to`: a message id in that chat (e.g. the bot's);
        `mention_bot`: prefix ``@<bot username>`` (a ``mention`` entity); `message_id`: force
        an id (0 = Telegram's ephemeral messages)."""
        body = {"text": text, "chat_id": chat_id, "reply_to_message_id": reply_to,
                "mention_bot": mention_bot, "message_id": message_id}  # fmt: skip
        return cast(JSON, self._req("POST", f"/users/{user_id}/messages", json=body))

    def send_group_message(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        *,
        mention: bool = False,
        reply_to: int | None = None,
    ) -> JSON:
        """A member writes in a group: optionally addressing the bot (@mention) or replying."""
        return self.send_text(
            user_id, text, chat_id=chat_id, reply_to=reply_to, mention_bot=mention
        )

    def send_command(
        self,
        user_id: int,
        command: str,
        args: str | None = None,
        *,
        chat_id: int | None = None,
        bot_username: bool = False,
    ) -> JSON:
        """``/command args``; `bot_username` makes it ``/command@botname`` (groups)."""
        body = {"command": command, "args": args, "chat_id": chat_id, "bot_username": bot_username}
        return cast(JSON, self._req("POST", f"/users/{user_id}/commands", json=body))

    def send_photo(
        self, user_id: int, caption: str | None = None, *, chat_id: int | None = None
    ) -> JSON:
        body = {"photo": True, "caption": caption, "chat_id": chat_id}
        return cast(JSON, self._req("POST", f"/users/{user_id}/messages", json=body))

    def send_file(
        self,
        user_id: int,
        kind: str = "document",
        content: bytes | None = None,
        *,
        size: int | None = None,
        caption: str | None = None,
        chat_id: int | None = None,
        **fields: Any,
    ) -> JSON:
        """The user sends a file of `kind` (photo, document, video, voice, audio, video_note,
        animation) with `content` (downloadable through getFile), or only a declared `size`
        (e.g. 25 MB, to see getFile's "file is too big"). `fields`: file_name, mime_type,
        width, height, duration, length."""
        body = {"media": media_item(kind, content, size=size, **fields),
                "caption": caption, "chat_id": chat_id}  # fmt: skip
        return cast(JSON, self._req("POST", f"/users/{user_id}/messages", json=body))

    def send_sticker(self, user_id: int, emoji: str = "😀") -> JSON:
        return cast(JSON, self._req("POST", f"/users/{user_id}/messages", json={"sticker": emoji}))

    def send_burst(
        self,
        user_id: int,
        messages: list[str | JSON],
        *,
        spacing: float = 0.0,
        chat_id: int | None = None,
    ) -> list[JSON]:
        """Several messages in a row, `spacing` seconds apart; one update each."""
        body = {"messages": messages, "spacing": spacing, "chat_id": chat_id}
        return cast(list[JSON], self._req("POST", f"/users/{user_id}/burst", json=body))

    def send_album(
        self,
        user_id: int,
        items: int | list[JSON] = 3,
        *,
        caption: str | None = None,
        order: list[int] | None = None,
        spacing: float = 0.0,
        chat_id: int | None = None,
    ) -> JSON:
        """An album (2-10 items sharing a media_group_id; an int = that many photos; items
        from `media_item`), delivered as separate updates in `order` (indexes), `spacing`
        seconds apart. Returns ``{"media_group_id", "messages", "updates"}``."""
        parts = [media_item("photo") for _ in range(items)] if isinstance(items, int) else items
        body = {"items": parts, "caption": caption, "order": order, "spacing": spacing,
                "chat_id": chat_id}  # fmt: skip
        return cast(JSON, self._req("POST", f"/users/{user_id}/album", json=body))

    def press_button(
        self, user_id: int, message_id: int, data: str, *, chat_id: int | None = None
    ) -> JSON:
        """Press the inline button with `data` under the bot's message `message_id`."""
        body = {"message_id": message_id, "data": data, "chat_id": chat_id}
        return cast(JSON, self._req("POST", f"/users/{user_id}/callback", json=body))

    def stop_draft(
        self,
        chat_id: int,
        draft_id: int,
        *,
        message_thread_id: int | None = None,
        force: bool = False,
    ) -> JSON:
        """Press Telegram's stop button on the bot's draft: a ``stopped_message_generation``
        update. Refused (409) for a draft sent without ``can_stop`` unless `force`."""
        body = {"message_thread_id": message_thread_id, "force": force}
        return cast(JSON, self._req("POST", f"/chats/{chat_id}/drafts/{draft_id}/stop", json=body))

    def deliver_raw(self, update: JSON, *, apply_allowed_updates: bool = False) -> JSON:
        """Queue `update` exactly as given (deliver twice to test duplicate handling)."""
        params = {"apply_allowed_updates": "true"} if apply_allowed_updates else {}
        return cast(JSON, self._req("POST", "/updates", json=update, params=params))

    # business ---------------------------------------------------------------------------
    def connect_business(
        self,
        owner_id: int,
        *,
        id: str | None = None,
        can_reply: bool = True,
        is_enabled: bool = True,
    ) -> JSON:
        """Connect simulated user `owner_id`'s business account to the bot (a
        ``business_connection`` update); returns ``{"connection", "update"}``."""
        body = {"user_id": owner_id, "id": id, "can_reply": can_reply, "is_enabled": is_enabled}
        return cast(JSON, self._req("POST", "/business", json=body))

    def send_business_message(
        self,
        connection_id: str,
        from_user_id: int,
        text: str | None = None,
        *,
        chat_id: int | None = None,
        **message: Any,
    ) -> JSON:
        """A customer writes to the business account (a ``business_message`` update); when
        `from_user_id` is the owner, `chat_id` names the customer. `message`: any other
        message field (media=media_item(...), caption, reply_to_message_id)."""
        body = {"from_user_id": from_user_id, "text": text, "chat_id": chat_id, **message}
        path = f"/business/{connection_id}/messages"
        return cast(JSON, self._req("POST", path, json=body))

    def business_messages(self, connection_id: str, customer_id: int) -> list[JSON]:
        path = f"/business/{connection_id}/chats/{customer_id}/messages"
        return cast(list[JSON], self._req("GET", path))

    # reading back -----------------------------------------------------------------------
    def messages(self, chat_id: int) -> list[JSON]:
        return cast(list[JSON], self._req("GET", f"/chats/{chat_id}/messages"))

    def bot_messages(self, chat_id: int) -> list[JSON]:
        return [m for m in self.messages(chat_id) if m.get("from", {}).get("is_bot")]

    def chat(self, chat_id: int) -> JSON:
        return cast(JSON, self._req("GET", f"/chats/{chat_id}"))

    def message_history(self, chat_id: int, message_id: int) -> JSON:
        """``{"message", "versions", "edits"}``: every version of a (bot) message, oldest first."""
        return cast(JSON, self._req("GET", f"/chats/{chat_id}/messages/{message_id}/history"))

    def drafts(self, chat_id: int) -> list[JSON]:
        """The chat's drafts (active and ended), each with every text it showed (`versions`)."""
        return cast(list[JSON], self._req("GET", f"/chats/{chat_id}/drafts"))

    def commands(self) -> list[JSON]:
        """What setMyCommands stored: ``[{"scope", "language_code", "commands"}]``."""
        return cast(list[JSON], self._req("GET", "/commands"))

    def files(self) -> list[JSON]:
        return cast(list[JSON], self._req("GET", "/files"))

    def download(self, file_id: str) -> bytes:
        """The file's content as a bot gets it: getFile, then ``/file/bot<token>/<path>``."""
        info = self.http.get(self.bot_api_url("getFile"), params={"file_id": file_id}).json()
        if not info.get("ok"):
            raise ValueError(f"getFile: {info.get('description')}")
        url = f"{self.base_url}/file/bot{self.token}/{info['result']['file_path']}"
        response = self.http.get(url)
        response.raise_for_status()
        return response.content

    def filtered_updates(self) -> list[JSON]:
        """Updates not delivered because the bot's allowed_updates excluded their kind."""
        return cast(list[JSON], self._req("GET", "/updates/filtered"))

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

    def flood_edits(self, count: int | None = None, retry_after: int = 5) -> JSON:
        """A 429 storm on edits: the next `count` (None = all, until cleared) editMessage*
        calls answer ``429 retry after <retry_after>``."""
        return self.inject_fault("editMessage*", kind="flood", count=count, retry_after=retry_after)

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

    def wait_for_drafts(
        self,
        chat_id: int,
        until: Callable[[list[JSON]], bool] = bool,
        timeout: float = 10.0,
        interval: float = 0.05,
    ) -> list[JSON]:
        """Poll the chat's drafts until `until(drafts)` holds (default: there is one)."""
        deadline = time.monotonic() + timeout
        found: list[JSON] = []
        while time.monotonic() < deadline:
            found = self.drafts(chat_id)
            if until(found):
                return found
            time.sleep(interval)
        raise TimeoutError(f"drafts of chat {chat_id} not as expected within {timeout}s: {found}")

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


def media_item(
    kind: str = "photo", content: bytes | None = None, *, size: int | None = None, **fields: Any
) -> JSON:
    """One file for `send_file`, `send_album` or a business message: `content` bytes, or a
    declared `size` only, or neither (stand-in bytes); `fields` such as file_name, mime_type,
    width, height, duration, length."""
    item: JSON = {"kind": kind, "size": size, **fields}
    if content is not None:
        item["content_b64"] = base64.b64encode(content).decode()
    return item
