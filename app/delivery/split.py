"""Split a reply that does not fit into one Telegram message into ordered parts.

Telegram limits a message text to 4096 and a caption to 1024 characters, counted in UTF-16 code
units (an emoji outside the BMP counts twice). We count the *raw* text including markup: the real
limit applies after entity parsing, so raw length is an upper bound and a part that fits here
always fits there.

Where to cut, best first: a paragraph break, a line break, the end of a sentence, a space, and
only then anywhere. "Anywhere" still never cuts a surrogate pair (we index code points), a
grapheme cluster (combining marks, ZWJ emoji sequences, flags), an escape sequence (``\\*``,
``&amp;``), an HTML tag, a link's URL or a ``pre`` block's language line. A cut inside a
formatting entity (``*bold*``, `` `code` ``, ``<b>..</b>``, ``<pre>``) closes the entity at the
end of the part and reopens it at the start of the next, so each part is valid markup on its own.
If a single unsplittable atom is longer than a whole part (a 5000-character URL) we cut it anyway:
the engine's "can't parse entities" fallback then sends that reply as plain text.

Whitespace at a cut is dropped (Telegram trims it anyway and a whitespace-only part is refused);
everything else of the text appears in the parts, in order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024

# A candidate cut is accepted at the best boundary kind only if the part it closes is at least
# this fraction of the room available; otherwise a lesser boundary further on is preferred, so a
# paragraph break near the start does not produce a tiny first part.
_MIN_FILL = 0.5

_Stack = tuple[tuple[str, str, str], ...]  # (name, opener, closer), outermost first


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _u16(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _joins_previous(ch: str) -> bool:
    """True if `ch` belongs to the grapheme cluster of the character before it."""
    cp = ord(ch)
    return (
        unicodedata.combining(ch) != 0
        or cp == 0x200D  # zero-width joiner
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors
        or 0x1F3FB <= cp <= 0x1F3FF  # skin tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # tag characters (subdivision flags)
        or unicodedata.category(ch) in ("Mn", "Me", "Mc")
    )


def _is_ri(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


@dataclass
class _Scan:
    """Per-position facts: may we cut before index i, and which entities are open there."""

    safe: list[bool]
    stacks: list[_Stack]


def _grapheme_safe(text: str) -> list[bool]:
    n = len(text)
    safe = [True] * (n + 1)
    ri_run = 0
    for i, ch in enumerate(text):
        if i > 0 and (_joins_previous(ch) or text[i - 1] == "\u200d"):
            safe[i] = False
        if _is_ri(ch):
            # Regional indicators pair up into flags: never cut between the two of a pair.
            if ri_run % 2 == 1:
                safe[i] = False
            ri_run += 1
        else:
            ri_run = 0
    return safe


def _scan_plain(text: str) -> _Scan:
    return _Scan(_grapheme_safe(text), [()] * (len(text) + 1))


# --- MarkdownV2 ---------------------------------------------------------------------------------

_MD_STYLES = ("||", "__", "*", "_", "~")


def _scan_markdown_v2(text: str) -> _Scan:
    """Track MarkdownV2 entities; see https://core.telegram.org/bots/api#markdownv2-style."""
    n = len(text)
    safe = _grapheme_safe(text)
    stacks: list[_Stack] = [()] * (n + 1)
    stack: list[tuple[str, str, str]] = []
    i = 0
    link_depth = 0  # inside [ ... ] of a link: the text may be cut, the (url) may not
    while i < n:
        stacks[i] = tuple(stack)
        top = stack[-1][0] if stack else ""
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            # An escape sequence is one unit: no cut between the backslash and its character.
            safe[i + 1] = False
            stacks[i + 1] = tuple(stack)
            i += 2
            continue
        if top == "pre":
            if text.startswith("```", i):
                stack.pop()
                for k in range(i + 1, min(i + 3, n + 1)):
                    safe[k] = False
                    stacks[k] = tuple(stack)
                i += 3
                continue
            i += 1
            continue
        if top == "code":
            if ch == "`":
                stack.pop()
            i += 1
            continue
        if text.startswith("```", i):
            # The opener includes the optional language up to the end of the line.
            end = text.find("\n", i + 3)
            end = n if end == -1 else end + 1
            opener = text[i:end]
            if not opener.endswith("\n"):
                opener += "\n"
            for k in range(i + 1, end):
                safe[k] = False
                stacks[k] = tuple(stack)
            stack.append(("pre", opener, "```"))
            i = end
            continue
        if ch == "`":
            stack.append(("code", "`", "`"))
            i += 1
            continue
        if ch == "[":
            link_depth += 1
            i += 1
            continue
        if ch == "]" and link_depth and text.startswith("(", i + 1):
            # "](url)" is atomic, and so is the whole link: reopening it would need the URL,
            # so cuts inside the link text are forbidden too (marked when we find its start).
            end = text.find(")", i + 1)
            end = n if end == -1 else end + 1
            start = text.rfind("[", 0, i)
            for k in range(max(start, 0) + 1, end):
                safe[k] = False
            for k in range(i + 1, end):
                stacks[k] = tuple(stack)
            link_depth -= 1
            i = end
            continue
        for tok in _MD_STYLES:
            if text.startswith(tok, i):
                if top == tok:
                    stack.pop()
                    safe[i] = False  # no empty entity at the start of the next part
                elif any(s[0] == tok for s in stack):
                    # Closing an entity that is not the innermost: Telegram would reject the
                    # nesting anyway; close it where it is.
                    idx = max(k for k, s in enumerate(stack) if s[0] == tok)
                    del stack[idx]
                else:
                    stack.append((tok, tok, tok))
                    if i + len(tok) <= n:
                        safe[i + len(tok)] = False  # no empty entity at the end of a part
                for k in range(i + 1, i + len(tok)):
                    safe[k] = False
                    stacks[k] = tuple(stack)
                i += len(tok)
                break
        else:
            i += 1
    stacks[n] = tuple(stack)
    return _Scan(safe, stacks)


# --- HTML ---------------------------------------------------------------------------------------

_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>")
_ENTITY_RE = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def _scan_html(text: str) -> _Scan:
    n = len(text)
    safe = _grapheme_safe(text)
    stacks: list[_Stack] = [()] * (n + 1)
    stack: list[tuple[str, str, str]] = []
    i = 0
    while i < n:
        stacks[i] = tuple(stack)
        ch = text[i]
        m = None
        if ch == "<":
            m = _TAG_RE.match(text, i)
        elif ch == "&":
            m = _ENTITY_RE.match(text, i)
        if m is None:
            i += 1
            continue
        end = m.end()
        if ch == "<":
            closing, name = m.group(1) == "/", m.group(2).lower()
            if closing:
                safe[i] = False  # no empty entity at the start of the next part
                for k in range(len(stack) - 1, -1, -1):
                    if stack[k][0] == name:
                        del stack[k]
                        break
            else:
                stack.append((name, m.group(0), f"</{name}>"))
        for k in range(i + 1, end):
            safe[k] = False
            stacks[k] = stacks[i]
        if ch == "<" and m.group(1) != "/" and end <= n:
            safe[end] = False  # a cut right after an opening tag would leave an empty entity
        i = end
    stacks[n] = tuple(stack)
    return _Scan(safe, stacks)


def _scan(text: str, parse_mode: str | None) -> _Scan:
    mode = (parse_mode or "").lower()
    if mode == "markdownv2":
        return _scan_markdown_v2(text)
    if mode == "html":
        return _scan_html(text)
    # Legacy "Markdown" has the same hazards as V2 for our purposes (entities and escapes).
    if mode == "markdown":
        return _scan_markdown_v2(text)
    return _scan_plain(text)


def _closers(stack: _Stack) -> str:
    return "".join(s[2] for s in reversed(stack))


def _openers(stack: _Stack) -> str:
    return "".join(s[1] for s in stack)


def _in_verbatim(stack: _Stack) -> bool:
    return any(s[0] in ("pre", "code") for s in stack)


_SENTENCE_END = frozenset(".!?…。！？;")


def _rank(text: str, c: int) -> int:
    """How good a cut before index `c` is: 4 paragraph, 3 line, 2 sentence, 1 space, 0 other."""
    prev, nxt = text[c - 1], text[c] if c < len(text) else "\n"
    if prev == "\n" and (nxt == "\n" or (c >= 2 and text[c - 2] == "\n")):
        return 4
    if prev == "\n" or nxt == "\n":
        return 3
    if nxt.isspace() and prev in _SENTENCE_END:
        return 2
    if prev.isspace() and c >= 2 and text[c - 2] in _SENTENCE_END:
        return 2
    if prev.isspace() or nxt.isspace():
        return 1
    return 0


def split_text(text: str, limit: int = MESSAGE_LIMIT, parse_mode: str | None = None) -> list[str]:
    """Split `text` into parts of at most `limit` UTF-16 units each (markup kept valid).

    Returns ``[]`` for a text that is empty or only whitespace (nothing to send).
    """
    return split_with_first_limit(text, limit, limit, parse_mode)


def split_with_first_limit(
    text: str, first_limit: int, limit: int, parse_mode: str | None = None
) -> list[str]:
    """Like `split_text`, with a different limit for the first part (a caption, then messages)."""
    if limit < 16 or first_limit < 16:
        raise ValueError("limit too small to split sensibly")
    text = text.strip()
    if not text:
        return []
    scan = _scan(text, parse_mode)
    n = len(text)
    # u16[i]: UTF-16 offset of index i, so any slice length is a subtraction.
    u16 = [0] * (n + 1)
    for i, ch in enumerate(text):
        u16[i + 1] = u16[i] + _u16(ch)

    parts: list[str] = []
    start, prefix = 0, ""
    room_limit = first_limit
    while start < n:
        room = room_limit - utf16_len(prefix)
        if u16[n] - u16[start] <= room:
            parts.append(prefix + text[start:])
            break
        cut = _choose_cut(text, scan, u16, start, room)
        stack = scan.stacks[cut]
        end = cut
        if not _in_verbatim(stack):
            while end > start and text[end - 1].isspace():
                end -= 1
        body = text[start:end]
        closers = _closers(stack)
        parts.append(prefix + body + closers)
        prefix = _openers(stack)
        start = cut
        if not _in_verbatim(stack):
            while start < n and text[start].isspace():
                start += 1
        room_limit = limit
    return [p for p in parts if p.strip()]


def _choose_cut(text: str, scan: _Scan, u16: Sequence[int], start: int, room: int) -> int:
    """The best index to cut before, so that text[start:cut] + closers fits in `room`."""
    n = len(text)
    # Largest index whose prefix fits without closers (closers are checked per candidate).
    lo, hi = start + 1, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if u16[mid] - u16[start] <= room:
            lo = mid
        else:
            hi = mid - 1
    max_end = lo
    best: dict[int, int] = {}
    fallback = -1
    c = max_end
    while c > start:
        if scan.safe[c] and u16[c] - u16[start] + utf16_len(_closers(scan.stacks[c])) <= room:
            r = _rank(text, c)
            if r not in best:
                best[r] = c
                if r == 4:
                    break
            if fallback < 0:
                fallback = c
        c -= 1
    for r in (4, 3, 2, 1):
        if r in best and u16[best[r]] - u16[start] >= room * _MIN_FILL:
            return best[r]
    if fallback > start:
        # No boundary in the back half of the room: the longest part that is still safe.
        return fallback
    # Nothing safe fits (one atom longer than the room): cut anyway, but between code points
    # and never leaving an empty part.
    return max(start + 1, max_end)


@dataclass(frozen=True)
class PartSpec:
    """One message to send: text plus the extras that belong on it."""

    text: str
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    reply_to_message_id: int | None


def plan_parts(
    text: str,
    *,
    parse_mode: str | None = None,
    reply_markup: dict[str, Any] | None = None,
    reply_to_message_id: int | None = None,
    limit: int = MESSAGE_LIMIT,
) -> list[PartSpec]:
    """The messages for one reply: the first quotes the message answered, the last has the keyboard.

    The keyboard goes last because buttons belong under the end of the answer (and only the
    last part is what the user sees when the chat scrolls); the reply quote goes first because
    that is where the answer starts.
    """
    chunks = split_text(text, limit, parse_mode)
    out: list[PartSpec] = []
    for i, chunk in enumerate(chunks):
        out.append(
            PartSpec(
                text=chunk,
                parse_mode=parse_mode,
                reply_markup=reply_markup if i == len(chunks) - 1 else None,
                reply_to_message_id=reply_to_message_id if i == 0 else None,
            )
        )
    return out


def split_caption(
    caption: str, parse_mode: str | None = None, *, caption_limit: int = CAPTION_LIMIT
) -> tuple[str, list[str]]:
    """A caption that fits (≤1024) plus the rest of the text as follow-up messages (≤4096 each).

    For a media reply whose text is too long for a caption: send the media with the first
    element, then the remaining ones as ordinary messages.
    """
    chunks = split_with_first_limit(caption, caption_limit, MESSAGE_LIMIT, parse_mode)
    if not chunks:
        return "", []
    return chunks[0], chunks[1:]
