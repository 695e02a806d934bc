"""The chat page in Chromium for streaming and conversation turns: a reply growing live (drafts
and edits), both stop buttons, group conversations with a chosen speaker, albums, bursts, files,
and links that are never live unless http(s)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.client import SandboxControl
from tests.sandbox.conftest import Bot
from tests.support.browser import ARTIFACTS, chromium_page
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def page(sandbox_server: ServerProcess) -> Iterator[Any]:
    with chromium_page(timeout_ms=10_000) as p:
        yield p


def _open_chat(page: Any, url: str, testid: str, chat_id: int) -> None:
    from playwright.sync_api import expect

    page.goto(url + "/")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    attr = "data-user-id" if testid == "user-item" else "data-chat-id"
    page.locator(f"[data-testid={testid}][{attr}='{chat_id}']").click()
    expect(page.locator(f"[data-testid={testid}].active")).to_have_count(1)


def test_draft_grows_and_its_stop_button_sends_the_update(
    control: SandboxControl, bot: Bot, sandbox_server: ServerProcess, page: Any
) -> None:
    from playwright.sync_api import expect

    uid = control.create_user("Ann")["id"]
    _open_chat(page, sandbox_server.url, "user-item", uid)
    draft = page.get_by_test_id("draft-text")
    text = ""
    for word in ("Once", " upon", " a", " time"):
        text += word
        bot.ok("sendMessageDraft", chat_id=uid, draft_id=11, text=text, can_stop=True)
        expect(draft).to_have_text(text)  # the same bubble, growing
    expect(page.get_by_test_id("draft")).to_have_count(1)
    expect(page.get_by_test_id("speaker-select")).to_be_hidden()  # a private chat: no speaker
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sandbox-draft.png"), full_page=True)
    page.get_by_test_id("stop-draft").click()
    expect(page.get_by_test_id("draft")).to_have_count(0)
    [update] = bot.ok("getUpdates", timeout=5)
    assert update["stopped_message_generation"] == {
        "chat": {"id": uid, "first_name": "Ann", "type": "private"},
        "draft_id": 11,
    }
    bot.ok("sendMessage", chat_id=uid, text="Once upon a time")
    expect(page.locator("[data-testid=message][data-from=bot] .text")).to_have_text(
        ["Once upon a time"]
    )
    # a draft without can_stop has no stop button; the final message replaces it
    bot.ok("sendMessageDraft", chat_id=uid, draft_id=12, text="Thinking hard")
    expect(draft).to_have_text("Thinking hard")
    expect(page.get_by_test_id("stop-draft")).to_have_count(0)
    bot.ok("sendMessage", chat_id=uid, text="Done")
    expect(page.get_by_test_id("draft")).to_have_count(0)
    expect(page.locator("[data-testid=message][data-from=bot] .text")).to_have_text(
        ["Once upon a time", "Done"]
    )


def test_edited_reply_grows_and_stop_sends_slash_stop(
    control: SandboxControl, bot: Bot, sandbox_server: ServerProcess, page: Any
) -> None:
    from playwright.sync_api import expect

    uid = control.create_user("Bob")["id"]
    _open_chat(page, sandbox_server.url, "user-item", uid)
    sent = bot.ok("sendMessage", chat_id=uid, text="The")
    reply = page.locator("[data-testid=message][data-from=bot] .text")
    expect(reply).to_have_text(["The"])
    expect(page.get_by_test_id("stop-generation")).to_be_hidden()  # not edited yet
    for text in ("The answer", "The answer is", "The answer is 42"):
        bot.ok("editMessageText", chat_id=uid, message_id=sent["message_id"], text=text)
        expect(reply).to_have_text([text])
    stop = page.get_by_test_id("stop-generation")
    expect(stop).to_be_visible()
    stop.click()
    expect(page.locator("[data-testid=message][data-from=user] .text")).to_have_text(["/stop"])
    [update] = bot.ok("getUpdates", timeout=5)
    assert update["message"]["text"] == "/stop"
    assert update["message"]["entities"] == [{"offset": 0, "length": 5, "type": "bot_command"}]
    assert control.message_history(uid, sent["message_id"])["edits"] == 3


def test_group_conversation_album_burst_and_files_from_the_page(
    control: SandboxControl, bot: Bot, sandbox_server: ServerProcess, page: Any
) -> None:
    from playwright.sync_api import expect

    ann = control.create_user("Ann")["id"]
    bob = control.create_user("Bob")["id"]
    page.goto(sandbox_server.url + "/")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    page.get_by_test_id("new-group-title").fill("Team")
    page.get_by_test_id("create-group").click()
    expect(page.locator("[data-testid=group-item].active")).to_contain_text("Team")
    gid = int(page.locator("[data-testid=group-item].active").get_attribute("data-chat-id"))

    page.get_by_test_id("speaker-select").select_option(str(bob))
    page.get_by_test_id("message-input").fill("@sandbox_bot what's up?")
    page.get_by_test_id("send-button").click()
    expect(page.get_by_test_id("sender-name")).to_have_text(["Bob"])
    answer = bot.ok("sendMessage", chat_id=gid, text="All good")

    page.get_by_test_id("speaker-select").select_option(str(ann))
    page.locator("[data-testid=message][data-from=bot] [data-testid=reply-button]").click()
    expect(page.get_by_test_id("reply-preview")).to_be_visible()
    page.get_by_test_id("message-input").fill("thanks bot")
    page.get_by_test_id("message-input").press("Enter")
    expect(page.get_by_test_id("reply-quote")).to_have_text(["All good"])

    page.get_by_test_id("message-input").fill("holiday pics")
    page.get_by_test_id("album-button").click()
    page.get_by_test_id("message-input").fill("one\ntwo\nthree")
    page.get_by_test_id("burst-button").click()
    page.get_by_test_id("file-input").set_input_files(
        [
            {"name": "a.txt", "mimeType": "text/plain", "buffer": b"alpha"},
            {"name": "b.txt", "mimeType": "text/plain", "buffer": b"beta"},
        ]
    )
    expect(page.locator("[data-testid=message][data-from=user]")).to_have_count(10)
    page.screenshot(path=str(ARTIFACTS / "sandbox-group.png"), full_page=True)

    msgs = [u["message"] for u in bot.ok("getUpdates", timeout=5)]
    assert len(msgs) == 10 and all(m["chat"]["id"] == gid for m in msgs)
    mention, thanks, *album, one, two, three, doc_a, doc_b = msgs
    assert mention["from"]["id"] == bob
    assert mention["entities"] == [{"offset": 0, "length": 12, "type": "mention"}]
    assert thanks["from"]["id"] == ann
    assert thanks["reply_to_message"]["message_id"] == answer["message_id"]
    assert len({m["media_group_id"] for m in album}) == 1 and all("photo" in m for m in album)
    assert album[0]["caption"] == "holiday pics"
    assert [one["text"], two["text"], three["text"]] == ["one", "two", "three"]
    assert doc_a["media_group_id"] == doc_b["media_group_id"]
    assert doc_a["document"]["file_name"] == "a.txt"
    assert control.download(doc_b["document"]["file_id"]) == b"beta"


def test_only_http_links_are_live(
    control: SandboxControl, bot: Bot, sandbox_server: ServerProcess, page: Any
) -> None:
    from playwright.sync_api import expect

    uid = control.create_user("Eve")["id"]
    _open_chat(page, sandbox_server.url, "user-item", uid)
    text = "click here or https://example.com/ or data"
    entities = [
        {"type": "text_link", "offset": 0, "length": 10, "url": "javascript:alert(1)"},
        {"type": "url", "offset": 14, "length": 20},
        {"type": "text_link", "offset": 38, "length": 4, "url": "data:text/html,<b>x</b>"},
    ]
    markup = {"inline_keyboard": [[{"text": "evil", "url": "javascript:alert(document.domain)"},
                                   {"text": "good", "url": "https://example.org/"}]]}  # fmt: skip
    bot.ok("sendMessage", chat_id=uid, text=text, entities=entities, reply_markup=markup)
    bubble = page.locator("[data-testid=message][data-from=bot]")
    expect(bubble.locator("a")).to_have_count(1)
    assert bubble.locator("a").get_attribute("href") == "https://example.com/"
    expect(bubble.get_by_test_id("unsafe-link")).to_have_text(["click here", "data"])
    assert page.locator("a[href^='javascript:'], a[href^='data:']").count() == 0
    evil = page.locator("[data-testid=inline-button][data-url-blocked=true]")
    expect(evil).to_have_text("evil ↗")
    dialogs: list[Any] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    windows = len(page.context.pages)
    evil.click()
    # the click handler shows this instead of opening the link: once it is there, it ran
    expect(page.get_by_test_id("callback-answer")).to_have_text("Not an http(s) link: not opened")
    assert len(page.context.pages) == windows and dialogs == []
