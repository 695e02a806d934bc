"""Update delivery: webhook (secret header, retries, order, raw samples unchanged) and
getUpdates (long polling, confirmation by offset, 409 while a webhook is set)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from sandbox.client import SandboxControl
from tests.sandbox.conftest import Bot, WebhookReceiver
from tests.support.servers import wait_until

UPDATES = Path(__file__).resolve().parents[1] / "data" / "telegram" / "updates.jsonl"


def where_delivery_stands(control: SandboxControl, receiver: WebhookReceiver | None = None) -> str:
    """For a timed-out wait: what the receiver got and what the sandbox says it tried."""
    got = f"receiver got {len(receiver.requests)}; " if receiver is not None else ""
    info = control.info()
    return (
        f"{got}sandbox webhook {info['webhook']}, pending {info['pending_updates']}, "
        f"last attempts {control.deliveries()[-5:]}"
    )


def test_webhook_sends_secret_and_real_shaped_updates(
    control: SandboxControl, bot: Bot, receiver: WebhookReceiver
) -> None:
    assert bot.call("setWebhook", url=receiver.url, secret_token="s3cr3t_-X") == {
        "ok": True,
        "result": True,
        "description": "Webhook was set",
    }
    user = control.create_user("Michael", username="mscott", language_code="it")
    control.send_text(user["id"], "Hello")
    control.send_command(user["id"], "start", "ciao")
    control.send_photo(user["id"], caption="a caption")
    control.send_sticker(user["id"], "😂")
    wait_until(
        lambda: len(receiver.requests) == 4,
        what="4 webhook deliveries",
        details=lambda: where_delivery_stands(control, receiver),
    )
    headers, first = receiver.requests[0]
    assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cr3t_-X"
    assert headers["Content-Type"] == "application/json"
    msg = first["message"]
    assert set(first) == {"update_id", "message"}
    assert msg["from"] == {
        "id": user["id"],
        "is_bot": False,
        "first_name": "Michael",
        "username": "mscott",
        "language_code": "it",
    }
    assert msg["chat"] == {
        "id": user["id"],
        "first_name": "Michael",
        "username": "mscott",
        "type": "private",
    }
    assert msg["text"] == "Hello" and isinstance(msg["date"], int)
    bodies = receiver.bodies()
    ids = [b["update_id"] for b in bodies]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [b["message"]["message_id"] for b in bodies] == [1, 2, 3, 4]
    assert bodies[1]["message"]["text"] == "/start ciao"
    assert bodies[1]["message"]["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    assert bodies[2]["message"]["caption"] == "a caption" and bodies[2]["message"]["photo"]
    assert bodies[3]["message"]["sticker"]["emoji"] == "😂"
    info = bot.ok("getWebhookInfo")
    assert info["url"] == receiver.url and info["pending_update_count"] == 0


def test_bad_secret_token_is_refused(control: SandboxControl, bot: Bot) -> None:
    body = bot.call("setWebhook", url="http://127.0.0.1:9/x", secret_token="has space")
    assert body["error_code"] == 400
    assert (
        bot.call("setWebhook", url="http://127.0.0.1:9/x", secret_token="a" * 257)["error_code"]
        == 400
    )


def test_webhook_retries_until_acknowledged_in_order(
    control: SandboxControl, bot: Bot, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [500, 502, 429]  # the first update is refused three times
    bot.ok("setWebhook", url=receiver.url)
    uid = control.create_user("Ann")["id"]
    for text in ("one", "two", "three"):
        control.send_text(uid, text)
    wait_until(
        lambda: len(receiver.requests) == 6,
        what="3 failures + 3 successes",
        details=lambda: where_delivery_stands(control, receiver),
    )
    texts = [b["message"]["text"] for b in receiver.bodies()]
    # the head is retried; later updates wait behind it (one in flight at a time)
    assert texts == ["one", "one", "one", "one", "two", "three"]
    attempts = [(d["update_id"], d["attempt"], d["status"]) for d in control.deliveries()]
    assert [a[1] for a in attempts] == [1, 2, 3, 4, 1, 1]
    info = bot.ok("getWebhookInfo")
    assert "429" in info["last_error_message"] and info["pending_update_count"] == 0


def test_webhook_retries_connection_errors(control: SandboxControl, bot: Bot) -> None:
    receiver = WebhookReceiver()
    url = receiver.url
    receiver.close()  # nobody listens there now
    bot.ok("setWebhook", url=url)
    uid = control.create_user("Ann")["id"]
    control.send_text(uid, "anyone?")
    wait_until(
        lambda: len(control.deliveries()) >= 2,
        what="retried connection errors",
        details=lambda: where_delivery_stands(control),
    )
    assert control.deliveries()[0]["status"] is None
    assert bot.ok("getWebhookInfo")["last_error_message"].startswith("Connection error")
    assert bot.ok("getWebhookInfo")["pending_update_count"] == 1
    bot.ok("deleteWebhook", drop_pending_updates=True)
    assert bot.ok("getUpdates") == []


def test_every_sample_update_arrives_unchanged(
    control: SandboxControl, bot: Bot, receiver: WebhookReceiver
) -> None:
    samples = [json.loads(line)["update"] for line in UPDATES.read_text().splitlines()]
    assert len(samples) == 80
    bot.ok("setWebhook", url=receiver.url, secret_token="t")
    for update in samples:
        control.deliver_raw(update)
    control.deliver_raw(samples[0])  # the same update twice: delivered twice
    wait_until(
        lambda: len(receiver.requests) == 81,
        timeout=20,
        what="81 deliveries",
        details=lambda: where_delivery_stands(control, receiver),
    )
    assert receiver.bodies() == [*samples, samples[0]]


def test_get_updates_long_polls_and_confirms_by_offset(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    result: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        result["body"] = bot.call("getUpdates", timeout=10)
        result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    wait_until(lambda: len(control.calls("getUpdates")) == 1, what="the long poll to start")
    control.send_text(uid, "wake up")
    thread.join(10)
    assert result["body"]["ok"] and result["elapsed"] < 5
    [update] = result["body"]["result"]
    assert update["message"]["text"] == "wake up"
    control.send_text(uid, "second")
    # not confirmed yet: the same update comes again, with the new one
    again = bot.ok("getUpdates")
    assert [u["update_id"] for u in again] == [update["update_id"], update["update_id"] + 1]
    # offset = last id + 1 confirms both
    assert bot.ok("getUpdates", offset=again[-1]["update_id"] + 1, timeout=0) == []
    control.send_text(uid, "third")
    control.send_text(uid, "fourth")
    assert [u["message"]["text"] for u in bot.ok("getUpdates", limit=1)] == ["third"]
    assert [u["message"]["text"] for u in bot.ok("getUpdates", offset=-1)] == ["fourth"]


def test_get_updates_conflicts_with_webhook(control: SandboxControl, bot: Bot) -> None:
    bot.ok("setWebhook", url="http://127.0.0.1:9/hook")
    body = bot.call("getUpdates")
    assert body == {
        "ok": False,
        "error_code": 409,
        "description": "Conflict: can't use getUpdates method while webhook is active; "
        "use deleteWebhook to delete the webhook first",
    }
    assert bot.call("deleteWebhook") == {
        "ok": True,
        "result": True,
        "description": "Webhook was deleted",
    }
    assert bot.ok("getUpdates") == []


def test_callback_query_from_button_press(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    markup = {"inline_keyboard": [[{"text": "Add", "callback_data": "add"}]]}
    sent = bot.ok("sendMessage", chat_id=uid, text="Manage", reply_markup=markup)
    control.press_button(uid, sent["message_id"], "add")
    [update] = bot.ok("getUpdates")
    query = update["callback_query"]
    assert set(query) == {"id", "from", "message", "chat_instance", "data"}
    assert query["data"] == "add" and query["message"] == sent
    assert bot.ok("answerCallbackQuery", callback_query_id=query["id"], text="Added")
    assert control.callback_answers()[0]["text"] == "Added"
    again = bot.call("answerCallbackQuery", callback_query_id=query["id"])
    assert again["description"] == (
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    )


def test_edits_and_typing_show_in_transcript(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    control.send_text(uid, "hi")
    assert bot.ok("sendChatAction", chat_id=uid, action="typing") is True
    assert control.chat(uid)["typing"] is True
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    sent = bot.ok("sendMessage", chat_id=uid, text="v1", reply_markup=markup)
    assert control.chat(uid)["typing"] is False  # the bot's message ends "typing"
    edited = bot.ok("editMessageText", chat_id=uid, message_id=sent["message_id"], text="v2")
    assert edited["text"] == "v2" and "reply_markup" not in edited and edited["edit_date"]
    same = bot.call("editMessageText", chat_id=uid, message_id=sent["message_id"], text="v2")
    assert same["description"].startswith("Bad Request: message is not modified")
    bot.ok(
        "editMessageReplyMarkup", chat_id=uid, message_id=sent["message_id"], reply_markup=markup
    )
    transcript = control.messages(uid)
    assert [m["text"] for m in transcript] == ["hi", "v2"]
    assert transcript[1]["reply_markup"] == markup
    missing = bot.call("editMessageText", chat_id=uid, message_id=999, text="x")
    assert missing["description"] == "Bad Request: message to edit not found"
