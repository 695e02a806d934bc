"""After a button press, the pressed message's keyboard shows the choice (`BUTTON_FEEDBACK`).

People press "Approve" and expect the message to say so, and expect a second press not to
approve twice. So after a press, the keyboard of the message that carried the button changes:

- `mark` (default): the pressed button stays, as "✓ <label>", and does nothing any more (its
  data becomes `SPENT_DATA`, which the gateway answers and otherwise ignores); the other
  choice buttons go; link buttons stay.
- `remove`: the keyboard is removed.
- `keep`: nothing changes (the buttons can be pressed again).

Best effort, like "typing": a failed edit (the message is too old, the same keyboard again, a
flood wait) is logged and the press is answered anyway. The keyboard comes from the pressed
message as Telegram delivers it in the callback query; a press whose message Telegram did not
include (inline mode, an inaccessible message) changes nothing.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from app.errors import classify
from app.logger import get_logger
from app.telegram_client import TelegramClient
from app.utils import ParsedUpdate

log = get_logger(__name__)

#: The data of a pressed button under `mark`: a press on it is answered and ignored.
SPENT_DATA = "gw:spent"
MARK = "✓ "

Mode = Literal["mark", "remove", "keep"]


def marked_keyboard(markup: Any, pressed: str) -> dict[str, Any] | None:
    """The keyboard after `pressed` was chosen, or None when there is nothing to change."""
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list):
        return None
    found = False
    out: list[list[dict[str, Any]]] = []
    for row in rows:
        if not isinstance(row, list):
            continue
        kept: list[dict[str, Any]] = []
        for button in row:
            if not isinstance(button, dict):
                continue
            data = button.get("callback_data")
            if data == pressed and not found:
                found = True
                label = str(button.get("text") or "")
                kept.append(
                    {
                        "text": label if label.startswith(MARK) else MARK + label,
                        "callback_data": SPENT_DATA,
                    }
                )
            elif data is None:
                kept.append(copy.deepcopy(button))  # a link (or other non-choice) button
        if kept:
            out.append(kept)
    return {"inline_keyboard": out} if found else None


def pressed_label(markup: Any, pressed: str) -> str | None:
    """The label of the button whose data is `pressed` (for the agent), if the keyboard has it."""
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == pressed:
                text = button.get("text")
                return text if isinstance(text, str) else None
    return None


class ButtonFeedback:
    def __init__(self, telegram: TelegramClient, mode: Mode = "mark") -> None:
        self.telegram = telegram
        self.mode = mode

    async def apply(self, parsed: ParsedUpdate) -> bool:
        """Change the pressed message's keyboard; True when an edit was sent and accepted."""
        if self.mode == "keep" or parsed["kind"] != "callback_query":
            return False
        raw = parsed["raw"] if isinstance(parsed["raw"], dict) else {}
        query = raw.get("callback_query")
        message = query.get("message") if isinstance(query, dict) else None
        message_id = parsed["callback_message_id"]
        if not isinstance(message, dict) or not message_id or parsed["chat_id"] is None:
            return False
        data = parsed["callback_data"] or ""
        params: dict[str, Any] = {"chat_id": parsed["chat_id"], "message_id": message_id}
        connection = message.get("business_connection_id")
        if isinstance(connection, str) and connection:
            params["business_connection_id"] = connection
        if self.mode == "mark":
            markup = marked_keyboard(message.get("reply_markup"), data)
            if markup is None:
                return False
            params["reply_markup"] = markup
        elif not message.get("reply_markup"):
            return False  # remove: nothing to remove
        try:
            await self.telegram.call("editMessageReplyMarkup", params)
        except Exception as exc:
            log.info(
                "button feedback not shown",
                extra={"verdict": classify(exc).value, "error": str(exc)[:200]},
            )
            return False
        return True
