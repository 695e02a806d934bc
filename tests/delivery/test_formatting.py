"""Escaping helpers: every reserved character escaped, nothing else touched."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.delivery.formatting import (
    escape_html,
    escape_markdown_v2,
    escape_markdown_v2_code,
    escape_markdown_v2_url,
    markdown_v2_code_block,
)

RESERVED = "_*[]()~`>#+-=|{}.!\\"


def test_markdown_v2_escapes_every_reserved_char() -> None:
    assert escape_markdown_v2("a.b!") == "a\\.b\\!"
    assert escape_markdown_v2(RESERVED) == "".join("\\" + c for c in RESERVED)
    assert escape_markdown_v2("Tạm thời bận 😀") == "Tạm thời bận 😀"


def test_markdown_v2_code_and_url_contexts() -> None:
    assert escape_markdown_v2_code("a`b\\c*d") == "a\\`b\\\\c*d"
    assert escape_markdown_v2_url("https://x.org/a(b)") == "https://x.org/a(b\\)"
    assert markdown_v2_code_block("x = `1`", "py") == "```py\nx = \\`1\\`\n```"


def test_html_escape() -> None:
    assert escape_html("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert escape_html('"q"') == '"q"'
    assert escape_html('"q"', quote=True) == "&quot;q&quot;"


def _unescape_md(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@given(st.text())
def test_property_markdown_escape_roundtrip(text: str) -> None:
    escaped = escape_markdown_v2(text)
    assert _unescape_md(escaped) == text
    # no reserved character is left unescaped
    i = 0
    while i < len(escaped):
        if escaped[i] == "\\":
            i += 2
            continue
        assert escaped[i] not in RESERVED
        i += 1


@given(st.text())
def test_property_html_escape_roundtrip(text: str) -> None:
    import html

    escaped = escape_html(text)
    assert "<" not in escaped and ">" not in escaped
    assert html.unescape(escaped) == text
