"""The entity parsers, in-process (fast, many cases)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.errors import ApiError
from sandbox.formatting import MDV2_RESERVED, parse, utf16_len


def escape_v2(text: str) -> str:
    return "".join("\\" + c if c in MDV2_RESERVED or c == "\\" else c for c in text)


@given(st.text(max_size=200))
def test_escaped_markdown_v2_round_trips(text: str) -> None:
    plain, entities = parse(escape_v2(text), "MarkdownV2")
    assert plain == text and entities == []


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("a-b", "Character '-' is reserved and must be escaped with the preceding '\\'"),
        ("_x", "Can't find end of Italic entity at byte offset 0"),
        ("ü*x", "Can't find end of Bold entity at byte offset 2"),
        ("`code", "Can't find end of Code entity at byte offset 0"),
        ("[a](b", "Can't find end of a URL at byte offset 3"),
        ("x|y", "Character '|' is reserved and must be escaped with the preceding '\\'"),
    ],
)
def test_markdown_v2_errors(text: str, detail: str) -> None:
    with pytest.raises(ApiError) as info:
        parse(text, "MarkdownV2")
    assert info.value.code == 400
    assert info.value.description == f"Bad Request: can't parse entities: {detail}"


def test_markdown_v2_entities_use_utf16_offsets() -> None:
    plain, entities = parse("😀 *b _i_* __u__ ~s~ ||p|| ```py\nx\n```", "MarkdownV2")
    assert plain == "😀 b i u s p x\n"
    assert utf16_len("😀") == 2
    kinds = [(e["type"], e["offset"], e["length"]) for e in entities]
    assert kinds == [
        ("bold", 3, 3),
        ("italic", 5, 1),
        ("underline", 7, 1),
        ("strikethrough", 9, 1),
        ("spoiler", 11, 1),
        ("pre", 13, 2),
    ]
    assert entities[-1]["language"] == "py"


def test_html_and_legacy_markdown() -> None:
    plain, entities = parse(
        '<a href="https://e.com">x</a> &lt;3 <tg-spoiler>s</tg-spoiler>', "HTML"
    )
    assert plain == "x <3 s"
    assert entities[0] == {"offset": 0, "length": 1, "type": "text_link", "url": "https://e.com"}
    with pytest.raises(ApiError, match="Unsupported start tag"):
        parse("<div>x</div>", "HTML")
    with pytest.raises(ApiError, match="Can't find end tag"):
        parse("<b>x", "HTML")
    plain, entities = parse("*b* _i_ `c` [t](u)", "Markdown")
    assert plain == "b i c t" and [e["type"] for e in entities] == [
        "bold",
        "italic",
        "code",
        "text_link",
    ]
    with pytest.raises(ApiError, match="Can't find end of the entity starting at byte offset 2"):
        parse("a *b", "Markdown")
