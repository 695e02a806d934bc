"""The original `process_message_flow`, kept as a thin wrapper over the running gateway.

The gateway no longer runs the flow in FastAPI's `BackgroundTasks`: updates are stored in the
durable inbox and processed by workers (`app.workers`, `app.pipeline`), which survive crashes
and keep each chat in order. This function remains for code that calls the flow directly: it
asks the agent (with "typing") and hands the reply to the delivery engine, which sends it and
logs the outbound interaction, exactly as the pipeline's last steps do.
"""

from __future__ import annotations

from typing import Any

from app.runtime import Gateway

_gateway: Gateway | None = None


def set_default(gateway: Gateway | None) -> None:
    global _gateway
    _gateway = gateway


async def process_message_flow(
    user: dict[str, Any], chat_id: int, message_text: str, message_id: int, raw: dict[str, Any]
) -> None:
    """Answer one message for `user` in `chat_id` (agent → send → outbound history)."""
    if _gateway is None:
        raise RuntimeError("no running gateway in this process (start the app first)")
    update_id = raw.get("update_id") if isinstance(raw, dict) else None
    await _gateway.pipeline.answer(
        item=None,
        progress={},
        user=user,
        chat_id=chat_id,
        text=message_text,
        message_id=message_id,
        extra={},
        job_key=f"reply:{update_id}" if update_id is not None else f"flow:{chat_id}:{message_id}",
    )
