"""Telegram Business: a user's business account connected to the bot ("secretary" bots).

A connection links a business owner (a simulated user) to the bot. Customers write to the owner;
the bot receives those messages as ``business_message`` updates carrying the connection id, and
answers with ``business_connection_id``: the answer lands in the customer's chat with the owner,
sent *as the owner* (``from`` = owner, ``sender_business_bot`` = the bot). Telegram also reports
every message the owner's side sends in that chat, the bot's own included, as a
``business_message`` from the owner: that is how a bot sees its echoes and must ignore them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.state import Chat, User


@dataclass
class BusinessConnection:
    id: str
    owner: User
    can_reply: bool = True
    is_enabled: bool = True
    date: int = field(default_factory=lambda: int(time.time()))
    chats: dict[int, Chat] = field(default_factory=dict)  # customer id -> chat

    def to_api(self) -> dict[str, Any]:
        """The ``BusinessConnection`` object."""
        return {
            "id": self.id,
            "user": self.owner.to_api(),
            "user_chat_id": self.owner.id,
            "date": self.date,
            "rights": {"can_reply": self.can_reply, "can_read_messages": True},
            "is_enabled": self.is_enabled,
        }

    def chat_with(self, customer: User) -> Chat:
        """The owner's private chat with `customer` (its id is the customer's id)."""
        chat = self.chats.get(customer.id)
        if chat is None:
            chat = self.chats[customer.id] = Chat(
                id=customer.id, type="private", user=customer, business_connection_id=self.id
            )
        return chat
