"""The way in: Telegram's updates to the durable inbox.

`webhook` (the `POST /webhook/telegram` endpoint) or `poller` (`getUpdates`, for a bot without
a public URL) hands each update to `ingest`, which commits batches to the inbox and answers
only once they are stored.
"""
