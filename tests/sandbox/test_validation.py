"""Calls are checked against the Bot API spec and refused with Telegram's own 400s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sandbox.client import SandboxControl
from tests.sandbox.conftest import Bot

DATA = Path(__file__).resolve().parents[1] / "data" / "telegram"


def sample(kind: str) -> dict[str, Any]:
    for line in (DATA / "updates.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["kind"] == kind:
            update: dict[str, Any] = row["update"]
            return update
    raise KeyError(kind)


def test_token_and_method_errors(control: SandboxControl, bot: Bot) -> None:
    bad = Bot(control.base_url, token="1:wrong")
    assert bad.call("getMe") == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert bot.call("noSuchMethod") == {"ok": False, "error_code": 404, "description": "Not Found"}
    me = bot.ok("GETME")  # method names are case-insensitive
    assert me["is_bot"] is True and me["username"]


def test_missing_chat_id_and_empty_text(control: SandboxControl, bot: Bot) -> None:
    user = control.create_user("Ann")
    assert bot.call("sendMessage", text="hi")["description"] == "Bad Request: chat_id is empty"
    body = bot.call("sendMessage", chat_id=user["id"])
    assert body == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message text is empty",
    }
    body = bot.call("sendMessage", chat_id=user["id"], text="*  *", parse_mode="MarkdownV2")
    assert body["description"] == "Bad Request: message text is empty"


def test_text_length_counts_utf16_after_parsing(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    assert bot.call("sendMessage", chat_id=uid, text="x" * 4097)["description"] == (
        "Bad Request: message is too long"
    )
    # 2048 emoji are 4096 UTF-16 units: allowed; one more is too long.
    assert bot.call("sendMessage", chat_id=uid, text="😀" * 2048)["ok"]
    assert not bot.call("sendMessage", chat_id=uid, text="😀" * 2049)["ok"]
    # markup is not counted: 4096 visible characters inside bold
    assert bot.call(
        "sendMessage", chat_id=uid, text="*" + "a" * 4096 + "*", parse_mode="MarkdownV2"
    )["ok"]
    long_caption = bot.call("sendPhoto", chat_id=uid, photo="file-id", caption="c" * 1025)
    assert long_caption["description"] == "Bad Request: message caption is too long"


def test_reply_markup_checks(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    no_action = {"inline_keyboard": [[{"text": "A"}]]}
    body = bot.call("sendMessage", chat_id=uid, text="x", reply_markup=no_action)
    assert body["error_code"] == 400
    assert body["description"].startswith("Bad Request: can't parse inline keyboard button")
    two_actions = {
        "inline_keyboard": [[{"text": "A", "url": "https://e.com", "callback_data": "a"}]]
    }
    assert (
        bot.call("sendMessage", chat_id=uid, text="x", reply_markup=two_actions)["error_code"]
        == 400
    )
    not_rows = {"inline_keyboard": [{"text": "A", "callback_data": "a"}]}
    assert (
        bot.call("sendMessage", chat_id=uid, text="x", reply_markup=not_rows)["error_code"] == 400
    )
    body = bot.raw(
        "sendMessage", data={"chat_id": uid, "text": "x", "reply_markup": "{not json"}
    ).json()
    assert body["description"] == "Bad Request: can't parse reply keyboard markup JSON object"
    too_long = {"inline_keyboard": [[{"text": "A", "callback_data": "d" * 65}]]}
    body = bot.call("sendMessage", chat_id=uid, text="x", reply_markup=too_long)
    assert body == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: BUTTON_DATA_INVALID",
    }
    # 64 bytes is fine, even when they are 16 four-byte characters
    fine = {"inline_keyboard": [[{"text": "A", "callback_data": "😀" * 16}]]}
    assert bot.call("sendMessage", chat_id=uid, text="x", reply_markup=fine)["ok"]
    # a wrong primitive type deep inside is a 400 too
    bad_type = {"inline_keyboard": [[{"text": ["A"], "callback_data": "a"}]]}
    assert (
        bot.call("sendMessage", chat_id=uid, text="x", reply_markup=bad_type)["error_code"] == 400
    )


def test_inline_keyboard_sample_shape_is_accepted(control: SandboxControl, bot: Bot) -> None:
    sample_msg = sample("message_with_inline_keyboard")["message"]
    uid = control.create_user("Neko")["id"]
    # JSON body with nested object, and form body with the markup JSON-serialized
    sent = bot.ok("sendMessage", chat_id=uid, text="test", reply_markup=sample_msg["reply_markup"])
    assert sent["reply_markup"] == sample_msg["reply_markup"]
    assert set(sample_msg) <= set(sent) | {"from"}
    assert sent["from"]["is_bot"] is True and sent["chat"]["type"] == "private"
    form = bot.raw(
        "sendMessage",
        data={
            "chat_id": str(uid),
            "text": "test",
            "reply_markup": json.dumps(sample_msg["reply_markup"]),
        },
    ).json()
    assert form["ok"] and form["result"]["message_id"] == sent["message_id"] + 1
    # and GET with the query string, and multipart
    assert bot.http.get(f"{bot.base}/sendMessage", params={"chat_id": uid, "text": "q"}).json()[
        "ok"
    ]
    multipart = bot.raw("sendMessage", files={"chat_id": (None, str(uid)), "text": (None, "m")})
    assert multipart.json()["result"]["text"] == "m"
    cb = sample("callback_query")["callback_query"]["message"]["reply_markup"]
    assert bot.ok("sendMessage", chat_id=uid, text="cb", reply_markup=cb)["reply_markup"] == cb


def test_markdown_v2_and_html(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    body = bot.call("sendMessage", chat_id=uid, text="Price: 5.00!", parse_mode="MarkdownV2")
    assert body["description"] == (
        "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with "
        "the preceding '\\'"
    )
    body = bot.call("sendMessage", chat_id=uid, text="*bold", parse_mode="MarkdownV2")
    assert body["description"] == (
        "Bad Request: can't parse entities: Can't find end of Bold entity at byte offset 0"
    )
    good = bot.ok(
        "sendMessage",
        chat_id=uid,
        text="😀 *bold* _it_ [link](https://e.com) `x\\.y` 5\\.00\\!",
        parse_mode="MarkdownV2",
    )
    assert good["text"] == "😀 bold it link x.y 5.00!"
    types = [(e["type"], e["offset"], e["length"]) for e in good["entities"]]
    assert types == [("bold", 3, 4), ("italic", 8, 2), ("text_link", 11, 4), ("code", 16, 3)]
    html = bot.call("sendMessage", chat_id=uid, text="<b>x</i>", parse_mode="HTML")
    assert html["description"].startswith("Bad Request: can't parse entities:")
    assert (
        bot.call("sendMessage", chat_id=uid, text="<blink>x</blink>", parse_mode="HTML")[
            "error_code"
        ]
        == 400
    )
    ok = bot.ok("sendMessage", chat_id=uid, text="<b>a &amp; b</b>", parse_mode="HTML")
    assert ok["text"] == "a & b" and ok["entities"][0]["type"] == "bold"


def test_unknown_chat_and_blocked_user(control: SandboxControl, bot: Bot) -> None:
    body = bot.call("sendMessage", chat_id=987654, text="hi")
    assert body == {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    uid = control.create_user("Ann")["id"]
    control.block(uid)
    body = bot.call("sendMessage", chat_id=uid, text="hi")
    assert body == {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    control.unblock(uid)
    assert bot.call("sendMessage", chat_id=str(uid), text="hi")["ok"]  # "42" is an Integer too


def test_violations_are_recorded(control: SandboxControl, bot: Bot) -> None:
    bot.call("sendMessage", text="no chat")
    [rec] = control.calls("sendmessage")
    assert rec["status"] == 400 and rec["description"] == "Bad Request: chat_id is empty"
    assert rec["params"] == {"text": "no chat"}
