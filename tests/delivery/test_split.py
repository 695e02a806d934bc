"""The splitter: limits in UTF-16 units, boundaries, markup kept valid, nothing lost."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from app.delivery.split import (
    CAPTION_LIMIT,
    MESSAGE_LIMIT,
    plan_parts,
    split_caption,
    split_text,
    utf16_len,
)


def _content(text: str) -> str:
    return "".join(text.split())


def _assert_in_order(text: str, parts: list[str]) -> None:
    """Each part is the next piece of the text, with only whitespace between pieces."""
    pos = 0
    for part in parts:
        idx = text.find(part, pos)
        assert idx >= 0, f"part not found in order: {part[:40]!r}"
        assert text[pos:idx].strip() == "", "non-whitespace dropped between parts"
        pos = idx + len(part)
    assert text[pos:].strip() == ""


def test_utf16_len_counts_astral_twice() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("😀") == 2
    assert utf16_len("é") == 1
    assert utf16_len("👍🏽") == 4


def test_short_text_is_one_part() -> None:
    assert split_text("  hello  ") == ["hello"]
    assert split_text("   ") == []
    assert split_text("x" * MESSAGE_LIMIT) == ["x" * MESSAGE_LIMIT]


def test_9000_chars_three_ordered_parts_keyboard_on_last() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 150 for i in range(12)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    text = text[:9000]
    kb = {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}
    parts = plan_parts(text, reply_markup=kb, reply_to_message_id=7)
    assert len(parts) == 3
    assert [p.reply_markup for p in parts] == [None, None, kb]
    assert [p.reply_to_message_id for p in parts] == [7, None, None]
    assert all(utf16_len(p.text) <= MESSAGE_LIMIT for p in parts)
    _assert_in_order(text, [p.text for p in parts])
    # paragraph boundaries preferred: every part but the last ends a paragraph
    for p in parts[:-1]:
        assert text[text.find(p.text) + len(p.text) :].startswith("\n\n")


def test_boundary_preference_sentence_then_word() -> None:
    text = ("This is a sentence. " * 300).strip()  # no newlines at all
    parts = split_text(text)
    assert all(p.endswith(".") for p in parts[:-1])
    words = " ".join(["abcdefgh"] * 1000)  # no sentence ends
    parts = split_text(words)
    assert all(p.endswith("abcdefgh") and p.startswith("abcdefgh") for p in parts)
    assert _content(words) == "".join(_content(p) for p in parts)


def test_emoji_never_split_and_limit_in_utf16() -> None:
    text = "😀" * 3000  # 6000 UTF-16 units, no boundaries at all
    parts = split_text(text)
    assert [utf16_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text
    for p in parts:
        p.encode("utf-8")  # a lone surrogate would raise


def test_odd_offset_emoji_does_not_overflow() -> None:
    text = "a" + "😀" * 2100
    parts = split_text(text)
    assert all(utf16_len(p) <= MESSAGE_LIMIT for p in parts)
    assert "".join(parts) == text


def test_grapheme_clusters_kept_together() -> None:
    family = "👨\u200d👩\u200d👧"
    flag = "🇻🇳"
    text = (family + flag + "e\u0301") * 800
    parts = split_text(text)
    assert "".join(parts) == text
    for p in parts:  # every cut lands between whole clusters
        assert p.endswith((family, flag, "e\u0301"))
        assert p.startswith((family, flag, "e\u0301"))


def test_markdown_v2_bold_closed_and_reopened() -> None:
    text = "*" + " ".join(["bold"] * 1500) + "*"
    parts = split_text(text, parse_mode="MarkdownV2")
    assert len(parts) == 2
    assert all(p.startswith("*") and p.endswith("*") for p in parts)
    assert all(utf16_len(p) <= MESSAGE_LIMIT for p in parts)


def test_markdown_v2_pre_reopened_with_language() -> None:
    body = "\n".join(f"print({i})" for i in range(800))
    text = f"```python\n{body}\n```"
    parts = split_text(text, parse_mode="MarkdownV2")
    assert len(parts) >= 2
    for p in parts:
        assert p.startswith("```python\n")
        assert p.endswith("```")
        assert utf16_len(p) <= MESSAGE_LIMIT


def test_markdown_v2_escape_never_split() -> None:
    text = "a" * 4095 + "\\." + "b" * 100
    parts = split_text(text, parse_mode="MarkdownV2")
    assert parts[0] == "a" * 4095
    assert parts[1].startswith("\\.")


def test_markdown_v2_inline_code_and_link_atomic() -> None:
    link = "[docs](https://example.com/a_b)"
    text = "x" * 4080 + " " + link + " tail"
    parts = split_text(text, parse_mode="MarkdownV2")
    assert any(link in p for p in parts)
    code = "`" + "c" * 5000 + "`"
    parts = split_text(code, parse_mode="MarkdownV2")
    assert all(p.startswith("`") and p.endswith("`") for p in parts)


def test_html_tags_closed_and_reopened_entities_atomic() -> None:
    text = '<b>bold <a href="https://x.org">' + "link &amp; text " * 400 + "</a></b> done"
    parts = split_text(text, parse_mode="HTML")
    assert len(parts) >= 2
    assert parts[0].startswith("<b>bold <a href")
    assert parts[0].endswith("</a></b>")
    assert parts[1].startswith('<b><a href="https://x.org">')
    for p in parts:
        assert utf16_len(p) <= MESSAGE_LIMIT
        assert not re.search(r"&[a-z]*$", p.replace("</a></b>", ""))  # no cut entity
        assert p.count("<b>") == p.count("</b>")


def test_html_pre_code_with_language() -> None:
    inner = "\n".join(f"line {i} &lt;tag&gt;" for i in range(500))
    text = f'<pre><code class="language-py">{inner}</code></pre>'
    parts = split_text(text, parse_mode="HTML")
    assert len(parts) >= 2
    for p in parts:
        assert p.startswith('<pre><code class="language-py">')
        assert p.endswith("</code></pre>")


def test_caption_helper() -> None:
    text = "Sentence number one. " * 300
    caption, rest = split_caption(text)
    assert utf16_len(caption) <= CAPTION_LIMIT
    assert all(utf16_len(r) <= MESSAGE_LIMIT for r in rest)
    assert rest
    _assert_in_order(text, [caption, *rest])
    assert split_caption("short") == ("short", [])


_alphabet = st.sampled_from(
    [*"abcdefghij .,!?\n", "😀", "é", "e\u0301", "\u200d", "🇻🇳", "\t", "  ", "\n\n"]
)


@settings(max_examples=80, deadline=None)
@given(st.lists(_alphabet, min_size=0, max_size=4000), st.integers(min_value=16, max_value=600))
def test_property_plain_split_preserves_content(chunks: list[str], limit: int) -> None:
    text = "".join(chunks)
    parts = split_text(text, limit)
    assert all(utf16_len(p) <= limit for p in parts)
    assert all(p.strip() for p in parts)
    assert _content(text) == "".join(_content(p) for p in parts)
    _assert_in_order(text.strip(), parts)


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=600))
def test_property_any_text_fits_4096(seed: str) -> None:
    text = seed * (9000 // len(seed) + 1)
    parts = split_text(text)
    assert all(utf16_len(p) <= MESSAGE_LIMIT for p in parts)
    assert _content(text) == "".join(_content(p) for p in parts)


_md_word = st.sampled_from(["word", "\\.", "\\*", "😀", "x_y".replace("_", "\\_")])


@st.composite
def _markdown(draw: st.DrawFn) -> str:
    pieces = []
    for _ in range(draw(st.integers(1, 60))):
        words = " ".join(draw(st.lists(_md_word, min_size=1, max_size=30)))
        style = draw(st.sampled_from(["", "*", "_", "__", "~", "||", "`"]))
        if style == "`":
            words = words.replace("\\", "")
        pieces.append(f"{style}{words}{style}")
        pieces.append(draw(st.sampled_from([" ", "\n", "\n\n", ". "])))
    return "".join(pieces)


@settings(max_examples=60, deadline=None)
@given(_markdown(), st.integers(min_value=40, max_value=300))
def test_property_markdown_parts_fit_and_balance(text: str, limit: int) -> None:
    parts = split_text(text, limit, parse_mode="MarkdownV2")
    for p in parts:
        assert utf16_len(p) <= limit
        # no dangling escape at the end of a part
        assert not re.search(r"(?<!\\)(\\\\)*\\$", p)
        # every backtick-delimited code span is closed inside the part
        assert p.count("`") % 2 == 0
