"""Outbound delivery: durable, paced, ordered, retried Telegram sends (see docs/delivery.md).

Import `app.delivery.tables` before `create_schema` so the engine's tables are created.
"""

from app.delivery.engine import DeliveredJob, Delivery, DeliveryResult, TelegramAPI

__all__ = ["DeliveredJob", "Delivery", "DeliveryResult", "TelegramAPI"]
