"""Issue 11 support: bursts, albums, groups with members (mentions, replies, /cmd@bot), files
with downloadable content, Telegram Business, commands, allowed_updates, message_id 0."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from sandbox.actors import text_entities
from sandbox.client import SandboxControl, media_item
from tests.sandbox.conftest import Bot, WebhookReceiver
from tests.support.servers import wait_until

MB = 1024 * 1024


def test_burst_is_one_update_per_message_with_spacing(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    started = time.monotonic()
    sent = control.send_burst(uid, ["one", "two", {"text": "three"}], spacing=0.2)
    assert time.monotonic() - started >= 0.4
    updates = bot.ok("getUpdates")
    assert [u["message"]["text"] for u in updates] == ["one", "two", "three"]
    assert [u["update_id"] for u in updates] == [s["update"]["update_id"] for s in sent]
    dates = [s["message"]["message_id"] for s in sent]
    assert dates == sorted(dates) and len(set(dates)) == 3


def test_album_order_and_spacing(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    items = [media_item("photo", b"p0"), media_item("video", b"v1", duration=7),
             media_item("photo", b"p2")]  # fmt: skip
    album = control.send_album(uid, items, caption="holiday", order=[2, 0, 1], spacing=0.05)
    updates = bot.ok("getUpdates")
    msgs = [u["message"] for u in updates]
    assert {m["media_group_id"] for m in msgs} == {album["media_group_id"]}
    ids = [m["message_id"] for m in album["messages"]]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]  # consecutive, in album order
    assert [m["message_id"] for m in msgs] == [ids[2], ids[0], ids[1]]  # delivered out of order
    assert [u["update_id"] for u in updates] == sorted(u["update_id"] for u in updates)
    assert msgs[1]["caption"] == "holiday" and "caption" not in msgs[0]
    assert msgs[2]["video"]["duration"] == 7 and msgs[2]["video"]["mime_type"] == "video/mp4"
    assert control.download(msgs[0]["photo"][-1]["file_id"]) == b"p2"
    with pytest.raises(httpx.HTTPStatusError):
        control.send_album(uid, 2, order=[0, 0])
    docs = control.send_album(uid, [media_item("document", b"a", file_name="a.txt"),
                                    media_item("document", b"b", file_name="b.txt")])  # fmt: skip
    assert [m["document"]["file_name"] for m in docs["messages"]] == ["a.txt", "b.txt"]


def test_group_with_members_mentions_replies_and_commands(
    control: SandboxControl, bot: Bot
) -> None:
    ann = control.create_user("Ann", username="ann_smith")["id"]
    bob = control.create_user("Bob")["id"]
    group = control.create_group("Team", [ann, bob], type="supergroup", username="team_chat")
    gid = group["id"]
    assert gid < -(10**12) and group["members"] == [ann, bob]
    control.send_group_message(ann, gid, "hello everyone")
    control.send_group_message(bob, gid, "what do you think?", mention=True)
    answer = bot.ok("sendMessage", chat_id=gid, text="I think so")
    control.send_group_message(ann, gid, "thanks", reply_to=answer["message_id"])
    control.send_command(bob, "help", chat_id=gid, bot_username=True)
    control.send_text(ann, "cc @ann_smith see https://example.com")
    msgs = [u["message"] for u in bot.ok("getUpdates")]
    assert [m["from"]["id"] for m in msgs[:4]] == [ann, bob, ann, bob]
    assert msgs[0]["chat"] == {"id": gid, "title": "Team", "type": "supergroup",
                               "username": "team_chat"}  # fmt: skip
    assert msgs[1]["text"] == "@sandbox_bot what do you think?"
    assert msgs[1]["entities"] == [{"offset": 0, "length": 12, "type": "mention"}]
    assert msgs[2]["reply_to_message"]["message_id"] == answer["message_id"]
    assert msgs[2]["reply_to_message"]["from"]["is_bot"] is True
    assert msgs[3]["text"] == "/help@sandbox_bot"
    assert msgs[3]["entities"] == [{"offset": 0, "length": 17, "type": "bot_command"}]
    assert [e["type"] for e in msgs[4]["entities"]] == ["mention", "url"]
    plain = control.create_group("Old style", [ann])
    assert plain["type"] == "group" and -(10**12) < plain["id"] < 0


def test_entities_use_utf16_offsets() -> None:
    assert text_entities("😀 @some_bot /go") == [
        {"offset": 3, "length": 9, "type": "mention"},
        {"offset": 13, "length": 3, "type": "bot_command"},
    ]
    assert text_entities("mail a@b.example or @abc") == []  # no e-mail, too short a name


def test_files_of_every_kind_are_downloadable(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    kinds: dict[str, dict[str, Any]] = {
        "photo": {"width": 1280, "height": 720},
        "document": {"file_name": "report.pdf", "mime_type": "application/pdf"},
        "video": {"width": 640, "height": 480, "duration": 12},
        "voice": {"duration": 4},
        "audio": {"duration": 180, "file_name": "song.mp3"},
        "video_note": {"length": 240, "duration": 9},
        "animation": {},
    }
    for kind, fields in kinds.items():
        content = f"{kind} bytes".encode()
        msg = control.send_file(uid, kind, content, caption=f"a {kind}", **fields)["message"]
        obj = msg[kind][-1] if kind == "photo" else msg[kind]
        assert obj["file_size"] == len(content) and obj["file_id"] and obj["file_unique_id"]
        info = bot.ok("getFile", file_id=obj["file_id"])
        assert info["file_size"] == len(content) and "/" in info["file_path"]
        url = f"{control.base_url}/file/bot{control.token}/{info['file_path']}"
        assert httpx.get(url).content == content, kind
    msgs = [u["message"] for u in bot.ok("getUpdates")]
    photo, doc, video, voice, audio, note, anim = msgs
    assert photo["photo"][-1]["width"] == 1280 and photo["photo"][0]["width"] == 90
    assert doc["document"]["mime_type"] == "application/pdf"
    assert doc["document"]["file_name"] == "report.pdf"
    assert video["video"]["duration"] == 12 and video["video"]["height"] == 480
    assert voice["voice"] == {**voice["voice"], "duration": 4, "mime_type": "audio/ogg"}
    assert audio["audio"]["mime_type"] == "audio/mpeg"
    assert note["video_note"]["length"] == 240 and "mime_type" not in note["video_note"]
    assert anim["animation"]["mime_type"] == "video/mp4"
    assert all(m["caption"].startswith("a ") for m in msgs if "video_note" not in m)
    assert httpx.get(f"{control.base_url}/file/bot{control.token}/nope/x").status_code == 404
    assert (
        httpx.get(f"{control.base_url}/file/bot1:bad/{doc['document']['file_id']}").status_code
        == 401
    )


def test_files_over_20_mb_are_too_big(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    big = control.send_file(uid, "video", size=25 * MB)["message"]["video"]
    assert big["file_size"] == 25 * MB
    assert bot.call("getFile", file_id=big["file_id"]) == {
        "ok": False, "error_code": 400, "description": "Bad Request: file is too big",
    }  # fmt: skip
    edge = control.send_file(uid, "document", size=20 * MB)["message"]["document"]
    assert bot.ok("getFile", file_id=edge["file_id"])["file_size"] == 20 * MB
    assert bot.call("getFile", file_id="no-such-file")["error_code"] == 400
    stored = {f["file_id"]: f for f in control.files()}
    assert stored[big["file_id"]]["has_content"] is False  # declared, nothing allocated


def test_bot_uploads_are_stored_and_reusable(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    files = {"document": ("notes.txt", b"hello file", "text/plain")}
    sent = bot.raw("sendDocument", data={"chat_id": str(uid)}, files=files).json()["result"]
    doc = sent["document"]
    assert doc["file_name"] == "notes.txt" and doc["mime_type"] == "text/plain"
    assert doc["file_size"] == 10
    assert control.download(doc["file_id"]) == b"hello file"
    again = bot.ok("sendDocument", chat_id=uid, document=doc["file_id"])
    assert again["document"]["file_unique_id"] == doc["file_unique_id"]
    [call] = control.calls("sendDocument")[:1]
    assert "content" not in call["params"]["document"]  # the record keeps no bytes


def test_business_connection_messages_and_echoes(control: SandboxControl, bot: Bot) -> None:
    owner = control.create_user("Shop Owner", username="shop_owner")["id"]
    customer = control.create_user("Carla")["id"]
    connected = control.connect_business(owner, id="biz-1")
    assert connected["connection"]["user"]["id"] == owner
    control.send_business_message("biz-1", customer, "do you ship to Hanoi?")
    reply = bot.ok("sendMessage", chat_id=customer, text="Yes!", business_connection_id="biz-1")
    assert reply["from"]["id"] == owner and reply["sender_business_bot"]["is_bot"] is True
    assert reply["business_connection_id"] == "biz-1"
    control.send_business_message("biz-1", owner, "I'll add a discount", chat_id=customer)
    updates = bot.ok("getUpdates")
    kinds = [next(k for k in u if k != "update_id") for u in updates]
    assert kinds == ["business_connection", "business_message", "business_message",
                     "business_message"]  # fmt: skip
    conn, incoming, echo, by_owner = (u[k] for u, k in zip(updates, kinds, strict=True))
    assert conn["id"] == "biz-1" and conn["rights"]["can_reply"] is True
    assert incoming["from"]["id"] == customer and incoming["chat"]["id"] == customer
    assert incoming["business_connection_id"] == "biz-1"
    assert echo["from"]["id"] == owner and echo["sender_business_bot"]["id"] == bot_id(control)
    assert by_owner["from"]["id"] == owner and "sender_business_bot" not in by_owner
    transcript = control.business_messages("biz-1", customer)
    assert [m["text"] for m in transcript] == ["do you ship to Hanoi?", "Yes!",
                                               "I'll add a discount"]  # fmt: skip
    assert control.messages(customer) == []  # the bot's own chat with Carla is another chat
    assert bot.ok("getBusinessConnection", business_connection_id="biz-1")["id"] == "biz-1"
    wrong = bot.call("sendMessage", chat_id=customer, text="x", business_connection_id="nope")
    assert wrong["error_code"] == 400
    control.connect_business(owner, id="biz-1", can_reply=False)
    assert (
        bot.call("sendMessage", chat_id=customer, text="x", business_connection_id="biz-1")[
            "error_code"
        ]
        == 400
    )


def bot_id(control: SandboxControl) -> int:
    return int(control.info()["bot"]["id"])


def test_my_commands_are_stored_and_visible(control: SandboxControl, bot: Bot) -> None:
    commands = [
        {"command": "start", "description": "Start"},
        {"command": "new", "description": "Fresh"},
    ]
    assert bot.ok("setMyCommands", commands=commands) is True
    assert bot.ok("getMyCommands") == commands
    assert bot.ok("getMyCommands", language_code="vi") == []
    scoped = {"type": "all_group_chats"}
    bot.ok("setMyCommands", commands=commands[:1], scope=scoped)
    stored = control.commands()
    assert [s["commands"] for s in stored] == [commands, commands[:1]]
    assert (
        bot.call("setMyCommands", commands=[{"command": "Bad-Name", "description": "x"}])[
            "error_code"
        ]
        == 400
    )
    assert bot.ok("deleteMyCommands") and bot.ok("getMyCommands") == []
    assert bot.ok("getMe")["username"] == "sandbox_bot"


def test_allowed_updates_apply_to_long_polling(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    sent = bot.ok("sendMessage", chat_id=uid, text="pick", reply_markup={
        "inline_keyboard": [[{"text": "A", "callback_data": "a"}]]})  # fmt: skip
    assert bot.ok("getUpdates", allowed_updates=["callback_query"]) == []
    control.send_text(uid, "not wanted")
    control.press_button(uid, sent["message_id"], "a")
    [only] = bot.ok("getUpdates")
    assert "callback_query" in only
    assert [u["message"]["text"] for u in control.filtered_updates()] == ["not wanted"]
    assert bot.ok("getWebhookInfo")["allowed_updates"] == ["callback_query"]
    bot.ok("getUpdates", offset=only["update_id"] + 1, allowed_updates=[])  # [] = the default
    control.send_text(uid, "wanted again")
    assert [u["message"]["text"] for u in bot.ok("getUpdates")] == ["wanted again"]


def test_allowed_updates_apply_to_the_webhook(
    control: SandboxControl, bot: Bot, receiver: WebhookReceiver
) -> None:
    uid = control.create_user("Ann")["id"]
    bot.ok(
        "setWebhook", url=receiver.url, allowed_updates=["message", "stopped_message_generation"]
    )
    control.connect_business(uid, id="b")  # business_connection: not subscribed
    bot.ok("sendMessageDraft", chat_id=uid, draft_id=1, text="..", can_stop=True)
    control.stop_draft(uid, 1)
    control.send_text(uid, "hi")
    wait_until(lambda: len(receiver.requests) == 2, what="2 deliveries")
    kinds = [next(k for k in b if k != "update_id") for b in receiver.bodies()]
    assert kinds == ["stopped_message_generation", "message"]
    info = bot.ok("getWebhookInfo")
    assert info["allowed_updates"] == ["message", "stopped_message_generation"]
    # raw updates are delivered as given, unless asked to apply the filter too
    raw = {"update_id": 5, "chat_member": {}}
    assert control.deliver_raw(raw, apply_allowed_updates=True)["queued"] is False
    assert control.deliver_raw({"update_id": 6, "poll": {}})["queued"] is True


def test_message_id_zero_breaks_nothing(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    control.send_text(uid, "ephemeral one", message_id=0)
    control.send_text(uid, "ephemeral two", message_id=0)
    normal = control.send_text(uid, "normal")["message"]
    assert [m["message_id"] for m in control.messages(uid)] == [0, 0, normal["message_id"]]
    assert [u["message"]["message_id"] for u in bot.ok("getUpdates")] == [
        0,
        0,
        normal["message_id"],
    ]
    assert bot.call("editMessageText", chat_id=uid, message_id=0, text="x")["error_code"] == 400
    assert bot.call("deleteMessage", chat_id=uid, message_id=0)["error_code"] == 400
    reply = bot.call("sendMessage", chat_id=uid, text="r", reply_parameters={"message_id": 0})
    assert reply["description"] == "Bad Request: message to be replied not found"
    assert bot.ok("sendMessage", chat_id=uid, text="ok")["message_id"] == normal["message_id"] + 1
    with pytest.raises(httpx.HTTPStatusError):
        control.press_button(uid, 0, "x")
    control.deliver_raw({"update_id": 7, "message": {"message_id": 0, "date": 0,
                                                     "chat": {"id": uid, "type": "private"}}})  # fmt: skip
    assert control.pending_updates()[-1]["message"]["message_id"] == 0
