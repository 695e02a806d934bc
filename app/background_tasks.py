"""The original `process_message_flow`, a thin wrapper over the running gateway.

The gateway no longer runs the flow in FastAPI's `BackgroundTasks`: updates are stored in the
durable inbox and processed by workers (`app.processing`), which survive crashes and keep each
chat in order. This function remains for code that calls the flow directly: it asks the agent
(with "typing"), hands the reply to the delivery engine and waits until it is sent, exactly as
the pipeline's last steps do; the engine then logs the outbound interaction.
"""

from __future__ import annotations

from typing import Any

from app import current
from app.processing.progress import Unrecorded


async def process_message_flow(
    user: dict[str, Any], chat_id: int, message_text: str, message_id: int, raw: dict[str, Any]
) -> None:
    """Answer one message for `user` in `chat_id` (agent → send → outbound history)."""
    gateway = current.require("process_message_flow")
    update_id = raw.get("update_id") if isinstance(raw, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        update_id = None
    key = f"reply:{update_id}" if update_id is not None else f"flow:{chat_id}:{message_id}"
    record = Unrecorded(key, str(chat_id), update_id)
    await gateway.pipeline.answer(
        record, user=user, chat_id=chat_id, text=message_text, message_id=message_id, extra={}
    )
    await gateway.delivery.wait(key, timeout=gateway.settings.SHUTDOWN_GRACE_SECONDS + 60)
