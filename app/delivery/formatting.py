"""Escaping helpers for Telegram's MarkdownV2 and HTML parse modes.

Telegram refuses a whole message ("can't parse entities") when one reserved character is not
escaped, so text that comes from outside (a user's name, an agent's answer meant literally) must
go through these before it is embedded in formatted text. Each context has its own rules:
https://core.telegram.org/bots/api#formatting-options
"""

from __future__ import annotations

import re

# Outside entities every one of these must be preceded by a backslash.
_MD_V2_SPECIAL = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")
# Inside `code` and ```pre```, only the backtick and the backslash are special.
_MD_V2_CODE = re.compile(r"([`\\])")
# Inside the (...) of an inline link, only ")" and the backslash are special.
_MD_V2_URL = re.compile(r"([)\\])")


def escape_markdown_v2(text: str) -> str:
    """Escape `text` for use as literal text in a MarkdownV2 message (outside entities)."""
    return _MD_V2_SPECIAL.sub(r"\\\1", text)


def escape_markdown_v2_code(text: str) -> str:
    """Escape `text` for use inside a MarkdownV2 `code` or ```pre``` entity."""
    return _MD_V2_CODE.sub(r"\\\1", text)


def escape_markdown_v2_url(url: str) -> str:
    """Escape a URL for the (...) part of a MarkdownV2 inline link."""
    return _MD_V2_URL.sub(r"\\\1", url)


def escape_html(text: str, *, quote: bool = False) -> str:
    """Escape `text` for an HTML-mode message (``quote=True`` also for attribute values).

    Telegram's HTML parser knows only ``&lt; &gt; &amp; &quot;`` and numeric entities, so this
    is deliberately narrower than `html.escape` (which also emits ``&#x27;``; harmless, but
    this keeps messages short).
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if quote:
        text = text.replace('"', "&quot;")
    return text


def markdown_v2_code_block(code: str, language: str | None = None) -> str:
    """A ```pre``` block with `code` escaped (and an optional language)."""
    lang = language or ""
    return f"```{lang}\n{escape_markdown_v2_code(code)}\n```"
