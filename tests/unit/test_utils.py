"""Update parsing against the 80 real update samples, plus arbitrary JSON (hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.utils import (
    build_display_name,
    parse_command,
    parse_update,
    safe_extract_text,
    trim_metadata,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "telegram" / "updates.jsonl"
SAMPLES: list[dict[str, Any]] = [json.loads(line) for line in DATA.read_text().splitlines()]
ORIGINAL_KEYS = {"chat_id", "telegram_id", "text", "message_id", "raw", "is_command", "command"}
EXTRA_KEYS = {
    "update_id",
    "kind",
    "chat",
    "from",
    "chat_key",
    "media",
    "callback_query_id",
    "callback_data",
    "command_args",
}

# What each sample kind must become.
EXPECTED_KIND = {
    "animation": "message",
    "command": "message",
    "command_with_args": "message",
    "command_with_botname": "message",
    "contact": "message",
    "dice": "message",
    "document": "message",
    "entities": "message",
    "forum_topic_message": "message",
    "forwarded": "message",
    "group_text": "message",
    "location": "message",
    "long_text": "message",
    "message_text": "message",
    "message_with_inline_keyboard": "message",
    "photo": "message",
    "photo_caption": "message",
    "poll_message": "message",
    "reply": "message",
    "sticker": "message",
    "unicode_text": "message",
    "user_no_lastname_username": "message",
    "video": "message",
    "vietnamese_text": "message",
    "voice": "message",
    "callback_query": "callback_query",
    "callback_query_inline": "callback_query",
    "channel_post": "unsupported",
    "edited_channel_post": "unsupported",
    "chat_boost": "unsupported",
    "chat_member": "unsupported",
    "my_chat_member": "unsupported",
    "group_chat_created": "unsupported",
    "inline_query": "unsupported",
    "left_chat_member": "unsupported",
    "new_chat_members": "unsupported",
    "new_chat_title": "unsupported",
    "migrate_from_chat_id": "unsupported",
    "migrate_to_chat_id": "unsupported",
    "message_reaction": "unsupported",
    "message_reaction_count": "unsupported",
    "pinned_message": "unsupported",
    "poll": "unsupported",
    "video_chat_started": "unsupported",
}


def sample(n: int) -> dict[str, Any]:
    """The update on line `n` (1-based) of updates.jsonl."""
    update: dict[str, Any] = SAMPLES[n - 1]["update"]
    return update


@pytest.mark.parametrize("line", range(1, len(SAMPLES) + 1))
def test_every_sample_parses(line: int) -> None:
    entry = SAMPLES[line - 1]
    parsed = parse_update(entry["update"])
    assert parsed.keys() >= ORIGINAL_KEYS | EXTRA_KEYS
    assert parsed["raw"] is entry["update"]
    assert parsed["update_id"] == entry["update"]["update_id"]
    kind = entry["kind"]
    if kind == "edited_message":
        # Live location edits are ignored; edited texts are handled.
        assert parsed["kind"] == (
            "unsupported" if "live_location_update" in entry["tags"] else kind
        )
    else:
        assert parsed["kind"] == EXPECTED_KIND[kind], parsed.get("unsupported_reason")
    if parsed["kind"] != "unsupported":
        assert isinstance(parsed["chat_id"], int)
        assert isinstance(parsed["telegram_id"], int)
        assert isinstance(parsed["chat_key"], str) and parsed["chat_key"]
        assert isinstance(parsed["text"], str)
        assert isinstance(parsed["chat"], dict)
        assert build_display_name(parsed["from"])
    else:
        assert parsed["unsupported_reason"]
    assert len(SAMPLES) == 80
    json.dumps(trim_metadata(entry["update"]))


def test_plain_text_message() -> None:
    p = parse_update(sample(1))
    assert p["kind"] == "message" and not p["is_command"] and p["command"] is None
    assert p["text"] == sample(1)["message"]["text"]
    assert p["chat_key"] == str(p["chat_id"])
    assert p["message_id"] == sample(1)["message"]["message_id"]
    assert p["media"] is None


def test_commands() -> None:
    p = parse_update(sample(2))
    assert (p["is_command"], p["command"], p["command_args"]) == (True, "/start", "")
    p = parse_update(sample(3))
    assert (p["command"], p["command_args"]) == ("/start", "ciao hello")
    p = parse_update(sample(74))  # /help@rgen_bot
    assert (p["command"], p["command_args"], p["command_bot"]) == ("/help", "", "rgen_bot")
    p = parse_update(sample(75))  # /random@rgen_bot 20 30
    assert (p["command"], p["command_args"]) == ("/random", "20 30")
    p = parse_update(sample(72))  # "/my_id @nvt_ssh_bot" in a group
    assert (p["command"], p["command_args"]) == ("/my_id", "@nvt_ssh_bot")
    assert (p["chat_id"] or 0) < 0 and (p["telegram_id"] or 0) > 0


def test_command_detection_without_entities() -> None:
    assert parse_command("/Start now") == ("/start", "now", None)
    assert parse_command("/a@Bot_1") == ("/a", "", "Bot_1")
    assert parse_command("/ hello") == (None, "", None)
    assert parse_command("/path/to/file") == (None, "", None)
    assert parse_command("hi /start") == (None, "", None)


def test_photo_caption_and_media_descriptions() -> None:
    p = parse_update(sample(36))
    assert p["media"] == "photo" and p["text"] == sample(36)["message"]["caption"]
    p = parse_update(sample(4))
    assert (p["media"], p["text"]) == ("photo", "[photo]")
    p = parse_update(sample(5))
    assert p["media"] == "sticker" and p["text"].startswith("[sticker")
    emoji = sample(5)["message"]["sticker"].get("emoji")
    if emoji:
        assert p["text"] == f"[sticker {emoji}]"
    voice = sample(6)["message"]["voice"]
    assert parse_update(sample(6))["text"] == f"[voice {voice['duration']}s]"
    assert parse_update(sample(8))["text"].startswith("[document ")
    assert parse_update(sample(9))["text"].startswith("[location ")
    assert parse_update(sample(10))["text"].startswith("[contact ")
    assert parse_update(sample(19))["media"] == "animation"
    assert parse_update(sample(21))["text"].startswith("[poll ")
    assert parse_update(sample(27))["text"].startswith("[dice ")


def test_safe_extract_text_shapes() -> None:
    assert safe_extract_text({"text": "hi", "caption": "c"}) == "hi"
    assert safe_extract_text({"photo": [{}], "caption": "look"}) == "look"
    assert safe_extract_text({"sticker": {"emoji": "😀"}}) == "[sticker 😀]"
    assert safe_extract_text({"voice": {"duration": 3}}) == "[voice 3s]"
    assert safe_extract_text({"video": {"duration": 12}}) == "[video 12s]"
    assert safe_extract_text({"document": {"file_name": "report.pdf"}}) == "[document report.pdf]"
    loc = {"location": {"latitude": 48.85, "longitude": 2.35}}
    assert safe_extract_text(loc) == "[location 48.85, 2.35]"
    contact = {"contact": {"first_name": "Name", "phone_number": "+123"}}
    assert safe_extract_text(contact) == "[contact Name +123]"
    assert safe_extract_text({"animation": {}, "document": {}}) == "[animation]"
    assert safe_extract_text({"audio": {"title": "Title"}}) == "[audio Title]"
    assert safe_extract_text({"poll": {"question": "Question"}}) == "[poll Question]"
    assert safe_extract_text({"dice": {"emoji": "🎲", "value": 4}}) == "[dice 🎲 4]"
    venue = {"venue": {"title": "Title"}, "location": {"latitude": 1, "longitude": 2}}
    assert safe_extract_text(venue) == "[venue Title]"
    assert (
        safe_extract_text({"id": "1", "data": "answer:yes", "chat_instance": "x"}) == "answer:yes"
    )
    assert safe_extract_text({"sticker": "garbage"}) == "[sticker]"
    junk: object
    for junk in (None, [], "x", 3, {"voice": {"duration": "long"}}):
        assert isinstance(safe_extract_text(junk), str)


def test_callback_query_with_message() -> None:
    p = parse_update(sample(11))
    assert p["kind"] == "callback_query"
    assert p["callback_data"] == "read" and p["text"] == "read"
    assert p["callback_query_id"] == "666728699048485871"
    assert p["chat_id"] == 222222222 and p["chat_key"] == "222222222"
    assert p["message_id"] is None and p["callback_message_id"] == 23759
    assert not p["is_command"]


def test_callback_query_inaccessible_message_uses_its_chat() -> None:
    p = parse_update(sample(56))
    assert p["kind"] == "callback_query" and p["chat_id"] == 9999999999
    assert p["callback_data"] is None and p["text"] == ""


def test_inline_callback_without_message() -> None:
    p = parse_update(sample(12))
    assert p["kind"] == "callback_query"
    assert p["chat_key"] == "user:1111111111"
    assert p["chat"] is not None
    assert p["chat"]["type"] == "private" and p["chat"]["id"] == 1111111111
    assert p["chat_id"] == 1111111111 and p["callback_data"] == "ok"
    assert parse_update(sample(77))["chat_key"] == "user:1111111"


def test_edited_message() -> None:
    p = parse_update(sample(13))
    assert p["kind"] == "edited_message" and p["text"] == sample(13)["edited_message"]["text"]
    assert parse_update(sample(49))["unsupported_reason"] == "live location update"


def test_unsupported_reasons() -> None:
    assert "channel_post" in str(parse_update(sample(14))["unsupported_reason"])
    assert parse_update(sample(42))["unsupported_reason"] == "service or unknown message"
    assert parse_update(sample(42))["chat_id"] is not None  # still known, for logging


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        "update",
        42,
        {},
        {"message": {"text": "hi"}},
        {"update_id": "7", "message": {}},
        {"update_id": 1, "message": []},
        {"update_id": 1, "message": {"chat": {"id": "x"}, "from": {"id": 1}, "text": "hi"}},
        {"update_id": 1, "message": {"chat": {"id": 1}, "from": {"id": 1}, "text": 5}},
        {"update_id": 1, "callback_query": {"id": 5, "from": {"id": True}}},
        {"update_id": True, "message": {"chat": {"id": 1}, "from": {"id": 1}, "text": "hi"}},
    ],
)
def test_garbage_is_unsupported(value: Any) -> None:
    p = parse_update(value)
    assert p["kind"] == "unsupported" and p["raw"] is value


def test_wrong_typed_fields_do_not_break_a_valid_message() -> None:
    update = {
        "update_id": 1,
        "message": {
            "message_id": "x",
            "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "first_name": 3},
            "text": "/go now",
            "entities": "bad",
        },
    }
    p = parse_update(update)
    assert p["kind"] == "message" and p["message_id"] is None and p["command"] == "/go"
    assert build_display_name(p["from"]) == "Telegram user 5"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "update_id",
                    "message",
                    "edited_message",
                    "callback_query",
                    "chat",
                    "from",
                    "id",
                    "text",
                    "caption",
                    "data",
                    "message_id",
                    "sticker",
                    "photo",
                    "location",
                    "type",
                    "first_name",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_parse_update_never_raises(value: Any) -> None:
    p = parse_update(value)
    assert p["kind"] in ("message", "edited_message", "callback_query", "unsupported")
    assert isinstance(p["text"], str)
    assert isinstance(safe_extract_text(value), str)
    assert isinstance(build_display_name(value), str)
    trim_metadata(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["message", "callback_query"]), json_values, min_size=1))
def test_parse_update_never_raises_with_update_id(body: dict[str, Any]) -> None:
    parse_update({"update_id": 1, **body})


def test_build_display_name() -> None:
    assert build_display_name({"first_name": "Ann", "last_name": "Lee"}) == "Ann Lee"
    assert build_display_name({"first_name": "Ann"}) == "Ann"
    assert build_display_name({"title": "Group"}) == "Group"
    assert build_display_name({"username": "ann"}) == "@ann"
    assert build_display_name({"id": 7}) == "Telegram user 7"
    assert build_display_name({"first_name": "  ", "username": "x"}) == "@x"
    assert build_display_name(None) == "Telegram user"


def test_trim_metadata_removes_bloat_and_keeps_the_rest() -> None:
    photo = sample(36)
    trimmed = trim_metadata(photo)
    assert len(trimmed["message"]["photo"]) == 1
    sizes = photo["message"]["photo"]
    largest = max(sizes, key=lambda s: s["width"] * s["height"])
    assert trimmed["message"]["photo"][0]["file_id"] == largest["file_id"]
    assert trimmed["message"]["caption_entities"] == photo["message"]["caption_entities"]
    assert len(photo["message"]["photo"]) == len(sizes)  # input untouched

    update: dict[str, Any] = {
        "update_id": 1,
        "message": {
            "video": {"file_id": "v", "thumbnail": {"file_id": "t"}, "thumb": {"file_id": "t"}},
            "reply_to_message": {"sticker": {"file_id": "s", "thumbnail": {}}},
            "entities": [{"type": "bold", "offset": i, "length": 1} for i in range(500)],
        },
    }
    trimmed = trim_metadata(update)
    assert trimmed["message"]["video"] == {"file_id": "v"}
    assert trimmed["message"]["reply_to_message"]["sticker"] == {"file_id": "s"}
    assert len(trimmed["message"]["entities"]) == 500
    assert "thumbnail" in update["message"]["video"]
    assert len(json.dumps(trim_metadata(sample(7)))) < len(json.dumps(sample(7)))
