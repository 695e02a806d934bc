"""Issue 10 support: sendMessageDraft (private chats only, a growing draft replaced by the final
message, Telegram's stop button), editMessageText refusals and edit flood limits, edit history."""

from __future__ import annotations

import pytest

from sandbox.client import SandboxControl
from sandbox.config import LimitSettings
from sandbox.limits import FloodControl
from sandbox.spec import load_spec
from tests.sandbox.conftest import Bot
from tests.sandbox.test_limits import FakeClock


def test_spec_additions_are_in_one_place() -> None:
    spec = load_spec()
    fields = {f.name for f in spec.methods["sendMessageDraft"].fields}
    assert {"can_stop", "keep_on_stop", "draft_id", "text"} <= fields
    assert "MessageGenerationStopped" in spec.types
    assert "stopped_message_generation" in {f.name for f in spec.types["Update"].fields}


def test_draft_grows_then_the_final_message_replaces_it(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    for text in ("Hel", "Hello, wor", "Hello, world"):
        assert bot.ok("sendMessageDraft", chat_id=uid, draft_id=7, text=text) is True
    [draft] = control.drafts(uid)
    assert draft["state"] == "active" and draft["text"] == "Hello, world"
    assert draft["versions"] == ["Hel", "Hello, wor", "Hello, world"]
    assert control.messages(uid) == []  # a draft is not a message
    sent = bot.ok("sendMessage", chat_id=uid, text="Hello, world!")
    [done] = control.drafts(uid)
    assert done["state"] == "sent" and done["message_id"] == sent["message_id"]
    assert [m["text"] for m in control.messages(uid)] == ["Hello, world!"]
    # parse_mode works on drafts; an empty text is the "Thinking..." placeholder
    assert bot.ok(
        "sendMessageDraft", chat_id=uid, draft_id=8, text="*bold*", parse_mode="MarkdownV2"
    )
    assert bot.ok("sendMessageDraft", chat_id=uid, draft_id=9, text="")
    by_id = {d["draft_id"]: d for d in control.drafts(uid)}
    assert by_id[8]["text"] == "bold" and by_id[8]["entities"][0]["type"] == "bold"
    assert by_id[9]["text"] == ""


def test_draft_refusals(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    gid = control.create_group("Team", [uid])["id"]
    sid = control.create_group("Big", [uid], type="supergroup")["id"]
    for chat in (gid, sid):
        body = bot.call("sendMessageDraft", chat_id=chat, draft_id=1, text="x")
        assert body == {"ok": False, "error_code": 400,
                        "description": "Bad Request: TEXTDRAFT_PEER_INVALID"}  # fmt: skip
    assert bot.call("sendMessageDraft", chat_id=uid, draft_id=0, text="x")["error_code"] == 400
    assert bot.call("sendMessageDraft", chat_id=uid, text="x")["error_code"] == 400
    assert (
        bot.call("sendMessageDraft", chat_id=uid, draft_id=1, text="x" * 4097)["description"]
        == "Bad Request: message is too long"
    )
    control.block(uid)
    assert bot.call("sendMessageDraft", chat_id=uid, draft_id=1, text="x")["error_code"] == 403


def test_stop_button_on_a_draft_with_can_stop(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    bot.ok("sendMessageDraft", chat_id=uid, draft_id=42, text="Once upon", can_stop=True)
    result = control.stop_draft(uid, 42)
    [update] = bot.ok("getUpdates")
    assert update == result["update"]
    assert set(update) == {"update_id", "stopped_message_generation"}
    stopped = update["stopped_message_generation"]
    assert stopped == {"chat": {"id": uid, "first_name": "Ann", "type": "private"}, "draft_id": 42}
    # later drafts with that id are accepted but not shown; the bot then sends what it has
    assert bot.ok("sendMessageDraft", chat_id=uid, draft_id=42, text="Once upon a time") is True
    [draft] = control.drafts(uid)
    assert draft["state"] == "stopped" and draft["text"] == "Once upon"
    assert draft["calls_after_stop"] == 1
    bot.ok("sendMessage", chat_id=uid, text="Once upon")
    assert control.drafts(uid)[0]["state"] == "stopped"


def test_stop_needs_a_live_draft_with_can_stop(control: SandboxControl, bot: Bot) -> None:
    import httpx

    uid = control.create_user("Ann")["id"]
    with pytest.raises(httpx.HTTPStatusError) as missing:
        control.stop_draft(uid, 5)
    assert missing.value.response.status_code == 404
    bot.ok("sendMessageDraft", chat_id=uid, draft_id=5, text="no button")
    with pytest.raises(httpx.HTTPStatusError) as no_button:
        control.stop_draft(uid, 5)
    assert no_button.value.response.status_code == 409
    forced = control.stop_draft(uid, 99, message_thread_id=3, force=True)
    assert forced["update"]["stopped_message_generation"]["message_thread_id"] == 3
    assert forced["update"]["stopped_message_generation"]["draft_id"] == 99


def test_edit_refusals_as_telegram_words_them(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    mine = control.send_text(uid, "user text")["message"]["message_id"]
    sent = bot.ok("sendMessage", chat_id=uid, text="v1")
    photo = bot.ok("sendPhoto", chat_id=uid, photo="https://example.com/p.jpg", caption="c")

    def edit(message_id: int, text: str, **extra: object) -> str:
        body = bot.call("editMessageText", chat_id=uid, message_id=message_id, text=text, **extra)
        return "ok" if body["ok"] else str(body["description"])

    assert edit(sent["message_id"], "v2") == "ok"
    assert edit(sent["message_id"], "v2").startswith("Bad Request: message is not modified")
    assert edit(999, "x") == "Bad Request: message to edit not found"
    assert edit(0, "x") == "Bad Request: message to edit not found"
    assert edit(mine, "x") == "Bad Request: message can't be edited"
    assert edit(photo["message_id"], "x") == "Bad Request: there is no text in the message to edit"
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    assert edit(sent["message_id"], "v2", reply_markup=markup) == "ok"  # markup changed
    assert edit(sent["message_id"], "v2", reply_markup=markup).startswith(
        "Bad Request: message is not modified"
    )
    history = control.message_history(uid, sent["message_id"])
    assert [v["text"] for v in history["versions"]] == ["v1", "v2", "v2"]
    assert history["edits"] == 2 and history["versions"][-1]["reply_markup"] == markup


def test_edit_limit_buckets() -> None:
    clock = FakeClock()
    flood = FloodControl(LimitSettings(), clock)
    # groups: 20 edits a minute, then one every 3 s
    assert [flood.acquire_edit(-5) for _ in range(5)] == [0.0] * 5  # per-chat burst 5
    clock.now += 60
    group = FloodControl(LimitSettings(edit_per_chat_rate=0), clock)
    results = [group.acquire_edit(-5) for _ in range(21)]
    assert results[:20] == [0.0] * 20 and 2.9 < results[20] <= 3.0
    assert group.acquire_edit(77) == 0.0  # private chats have no per-minute edit bucket
    # edits and sends do not share buckets
    assert group.acquire(-5) == 0.0


def test_edit_flood_over_http_gets_429(control: SandboxControl, bot: Bot) -> None:
    control.set_limits(edit_group_rate_per_minute=20, edit_group_burst=3, edit_per_chat_rate=0)
    uid = control.create_user("Ann")["id"]
    gid = control.create_group("Team", [uid])["id"]
    sent = bot.ok("sendMessage", chat_id=gid, text="0")
    answers = [
        bot.call("editMessageText", chat_id=gid, message_id=sent["message_id"], text=str(i))
        for i in range(1, 6)
    ]
    assert [a["ok"] for a in answers] == [True, True, True, False, False]
    assert answers[3]["error_code"] == 429 and answers[3]["parameters"]["retry_after"] == 3
    assert answers[3]["description"] == "Too Many Requests: retry after 3"
    assert control.messages(gid)[0]["text"] == "3"


def test_forced_429_storm_on_edits(control: SandboxControl, bot: Bot) -> None:
    uid = control.create_user("Ann")["id"]
    sent = bot.ok("sendMessage", chat_id=uid, text="start")
    control.flood_edits(count=3, retry_after=12)
    bodies = [
        bot.call("editMessageText", chat_id=uid, message_id=sent["message_id"], text=f"t{i}")
        for i in range(4)
    ]
    assert [b.get("parameters", {}).get("retry_after") for b in bodies[:3]] == [12, 12, 12]
    assert bodies[3]["ok"]  # the storm is over after `count`
    assert bot.call("sendMessage", chat_id=uid, text="sends are not affected")["ok"]
    assert control.stats()["flood_429"] == 3
