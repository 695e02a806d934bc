"""The emulated Bot API methods, one module per area; importing this package registers them."""

from sandbox.methods import bot, drafts, media, messages, updates

__all__ = ["bot", "drafts", "media", "messages", "updates"]
