"""Outbound delivery: durable, paced, ordered, retried Telegram sends (see docs/delivery.md).

`Delivery` (engine.py) is the facade; `DeliveryConfig` its knobs. The roles behind it:
`scheduler` (when), `sender` (one send and its record), `hooks` (`on_delivered`, once),
`chat_actions` ("typing…"), `store` and `tables` (the outbox), `split` and `formatting`
(long and marked-up texts), `pacing` (even spacing, token buckets).
"""

from app.delivery.config import DeliveryConfig
from app.delivery.engine import Delivery, DeliveryResult
from app.delivery.hooks import DeliveredJob
from app.delivery.ports import TelegramAPI
from app.delivery.states import JobState, PartState

__all__ = [
    "DeliveredJob",
    "Delivery",
    "DeliveryConfig",
    "DeliveryResult",
    "JobState",
    "PartState",
    "TelegramAPI",
]
