"""The `demo` backend: every input the gateway can send gets an answer that shows a feature."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_service.backends.base import UpstreamBusy
from agent_service.backends.demo import BUTTONS, LONG_DATA, STORY, DemoBackend
from agent_service.schemas import RespondIn
from app.utils import parse_update
from tests.agent_service.conftest import Agent, joined

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "telegram" / "updates.jsonl"
demo_backend = DemoBackend()


def compose(text: str, **fields: Any) -> tuple[str, list[Any]]:
    return demo_backend.compose(RespondIn(text=text, **fields))


def gateway_body(update: dict[str, Any]) -> dict[str, Any] | None:
    """What the gateway's pipeline sends the agent for this update (None: not answered)."""
    parsed = parse_update(update)
    if parsed["kind"] not in ("message", "callback_query") or parsed["chat_id"] is None:
        return None
    text = parsed["callback_data"] if parsed["kind"] == "callback_query" else parsed["text"]
    return {
        "user": {"id": "u1", "full_name": "Test"},
        "text": str(text or ""),
        "chat_id": parsed["chat_id"],
        "message_id": parsed["message_id"] if parsed["kind"] == "message" else None,
        "command": parsed["command"],
        "kind": parsed["kind"],
        "history": [],
    }


def test_every_sample_update_the_gateway_answers_gets_a_reply() -> None:
    bodies = [gateway_body(json.loads(line)["update"]) for line in SAMPLES.read_text().splitlines()]
    answered = [b for b in bodies if b is not None]
    assert len(answered) > 30
    for body in answered:
        reply, actions = demo_backend.compose(RespondIn.model_validate(body))
        assert reply.strip(), body
        assert len(reply) < 20000
        assert isinstance(actions, list)


def test_start_greets_by_name_and_offers_every_kind_of_button() -> None:
    reply, actions = compose("/start", command="/start", user={"full_name": "Linh Trần"})
    assert reply.startswith("Hello Linh Trần!")
    assert "/buttons" in reply and "/long" in reply and "/remember" in reply
    assert actions == BUTTONS
    assert any("url" in a for a in actions)
    assert any(len(a.get("data", "").encode()) > 64 for a in actions)  # kept server-side
    assert {a["row"] for a in actions} == {1, 2, 3}


@pytest.mark.parametrize("text", ["/help", "/help@demo_bot", "/HELP"])
def test_help_lists_the_keywords(text: str) -> None:
    reply, actions = compose(text)
    assert "/buttons" in reply and "/stream" in reply and "/busy" in reply and actions == []


@pytest.mark.parametrize("command", ["/new", "/reset"])
def test_new_conversation_is_acknowledged(command: str) -> None:
    reply, actions = compose(command, command=command)
    assert reply == "A new conversation: I only see what you say from now on." and actions == []
    assert "/new" in compose("/help")[0]


def test_unknown_command_says_so_and_helps() -> None:
    reply, _ = compose("/frobnicate now", command="/frobnicate")
    assert reply.startswith("Sorry, I don't know /frobnicate.") and "/help" in reply


@pytest.mark.parametrize("text", ["/buttons", "show me buttons", "MENU please"])
def test_buttons_by_command_or_keyword(text: str) -> None:
    assert compose(text)[1] == BUTTONS


@pytest.mark.parametrize("text", ["/long", "something long"])
def test_long_reply_is_longer_than_one_telegram_message(text: str) -> None:
    reply, _ = compose(text)
    assert len(reply) > 2 * 4096
    assert "\n\n" in reply  # paragraphs: the gateway splits at their boundaries


def test_keywords_count_in_short_messages_only() -> None:
    assert compose("how long does delivery take when the chat is busy?")[0].startswith("You said:")
    assert compose("ok, long")[0].startswith("This reply is longer")


def test_remember_quotes_the_first_thing_said_in_the_history() -> None:
    history = [
        {"direction": "in", "text": "my favourite fruit is mango"},
        {"direction": "out", "text": "You said: my favourite fruit is mango"},
        {"direction": "in", "text": "and I live in Huế"},
        {"direction": "out", "text": "You said: and I live in Huế"},
    ]
    reply, _ = compose("What did I say first?", history=history)
    assert "“my favourite fruit is mango”" in reply and "4 earlier messages" in reply
    assert "haven't said anything" in compose("remember?", history=[])[0]


def test_a_pressed_button_is_answered_with_its_data() -> None:
    reply, actions = compose("answer:yes", kind="callback_query")
    assert "“answer:yes”" in reply and actions == []
    reply, _ = compose(LONG_DATA, kind="callback_query")
    assert LONG_DATA in reply and "64-byte" in reply
    # Menu buttons do what they say; a text that merely looks like a keyword is data.
    assert len(compose("demo:long", kind="callback_query")[0]) > 8192
    assert "long" in compose("long", kind="callback_query")[0]


def test_media_descriptions_and_attachments() -> None:
    assert compose("[voice 3s]")[0].startswith("You sent a voice (3s).")
    assert compose("[video_note 5s]")[0].startswith("You sent a video note (5s).")
    reply, _ = compose(
        "",
        attachments=[
            {
                "kind": "photo",
                "mime_type": "image/jpeg",
                "size": 245760,
                "width": 1280,
                "height": 720,
                "caption": "Hạ Long",
            },
            {
                "kind": "document",
                "mime_type": "application/pdf",
                "size": 3 * 1024 * 1024,
                "file_name": "cv.pdf",
            },
        ],
    )
    assert "a photo (image/jpeg, 240 kB, 1280×720) captioned “Hạ Long”" in reply
    assert "a document (application/pdf, 3.0 MB, cv.pdf)" in reply


def test_merged_turns_list_their_parts() -> None:
    reply, _ = compose(
        "one\ntwo\nthree",
        parts=[
            {"text": "one", "message_id": 1},
            {"text": "two", "message_id": 2},
            {"text": None, "message_id": 3},
        ],
    )
    assert reply == "You sent 3 messages as one turn:\n1. one\n2. two\n3. (no text)"


def test_text_is_echoed_with_a_hint() -> None:
    assert (
        compose("xin chào")[0]
        == "You said: xin chào\n\nSend /help to see what this demo agent can do."
    )
    assert "no text" in compose("   ")[0]


def test_busy_raises_the_overloaded_error() -> None:
    with pytest.raises(UpstreamBusy) as info:
        compose("/busy")
    assert info.value.headers() == {"Retry-After": "1"}


async def test_streaming_is_word_by_word_and_adds_up_to_the_reply() -> None:
    events = [e async for e in DemoBackend().answer(RespondIn(text="/stream"), stream=True)]
    *deltas, final = events
    assert len(deltas) == len(STORY.split())
    assert "".join(d.text for d in deltas) == final.reply == STORY  # type: ignore[union-attr]


# --- over HTTP -------------------------------------------------------------------------------


def test_demo_over_http_json_and_sse(demo: Agent) -> None:
    body = {"text": "/buttons", "user": {"id": "u"}, "chat_id": 5, "history": []}
    response = demo.post(body)
    assert response.status_code == 200
    assert response.json() == {"reply": compose("/buttons")[0], "actions": BUTTONS}

    response, events = demo.stream({"text": "tell me a story"})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [name for name, _ in events] == ["delta"] * len(STORY.split()) + ["done"]
    assert joined(events) == events[-1][1]["reply"] == STORY


def test_demo_busy_is_a_503_with_retry_after_in_both_modes(demo: Agent) -> None:
    for response in (demo.post({"text": "/busy"}), demo.stream({"text": "/busy"})[0]):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "busy" in response.json()["detail"]
