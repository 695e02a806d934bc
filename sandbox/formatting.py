"""Basic parsers for ``parse_mode`` (MarkdownV2, HTML, Markdown) and UTF-16 lengths.

They are deliberately small: the goal is that text a real Telegram server would refuse with
"can't parse entities" is refused here too (unescaped reserved characters, unclosed entities,
unknown HTML tags), and that the length check runs on the text *after* the markup is removed,
counted in UTF-16 code units as Telegram counts it.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import ApiError, bad_request

MDV2_RESERVED = set("_*[]()~`>#+-=|{}.!")
MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
}
HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


def utf16_len(text: str) -> int:
    """Telegram measures text and entity offsets in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def entity_error(detail: str) -> ApiError:
    return bad_request(f"can't parse entities: {detail}")


@dataclass
class _Builder:
    """Accumulates plain text and knows the current UTF-16 offset."""

    parts: list[str] = field(default_factory=list)
    u16: int = 0
    entities: list[dict[str, Any]] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.u16 += utf16_len(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.u16 > start:  # Telegram drops empty entities
            self.entities.append(
                {"offset": start, "length": self.u16 - start, "type": kind, **extra}
            )

    def result(self) -> tuple[str, list[dict[str, Any]]]:
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), self.entities


def parse(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """Return (plain text, entities); raise the 400 Telegram would for bad markup."""
    if not parse_mode:
        return text, []
    mode = parse_mode.lower()
    if mode == "markdownv2":
        return _MarkdownV2(text).run()
    if mode == "html":
        return _parse_html(text)
    if mode == "markdown":
        return _parse_markdown(text)
    raise bad_request(f"unsupported parse_mode {parse_mode}")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


class _MarkdownV2:
    def __init__(self, text: str) -> None:
        self.text = text
        self.out = _Builder()
        # (kind, utf16 start, byte offset of the marker)
        self.stack: list[tuple[str, int, int]] = []

    def run(self) -> tuple[str, list[dict[str, Any]]]:
        t, i, n = self.text, 0, len(self.text)
        while i < n:
            c = t[i]
            if c == "\\":
                if i + 1 < n and 0 < ord(t[i + 1]) < 127:
                    self.out.add(t[i + 1])
                    i += 2
                    continue
                raise self._reserved(c)
            if c == "`":
                i = self._code(i)
                continue
            kind, width = self._marker(i)
            if kind is not None:
                self._toggle(kind, i)
                i += width
                continue
            if c == "[":
                self.stack.append(("text_link", self.out.u16, _byte_offset(t, i)))
                i += 1
                continue
            if c == "]" and self.stack and self.stack[-1][0] == "text_link":
                i = self._link_end(i)
                continue
            if c == ">" and (i == 0 or t[i - 1] == "\n"):
                end = t.find("\n", i)
                end = n if end == -1 else end
                start = self.out.u16
                inner, ents = _MarkdownV2(t[i + 1 : end]).run()
                for e in ents:
                    self.out.entities.append({**e, "offset": e["offset"] + start})
                self.out.add(inner)
                self.out.entity("blockquote", start)
                i = end
                continue
            if c in MDV2_RESERVED:
                raise self._reserved(c)
            self.out.add(c)
            i += 1
        if self.stack:
            kind, _, byte = self.stack[-1]
            raise entity_error(
                f"Can't find end of {MDV2_NAMES.get(kind, kind)} entity at byte offset {byte}"
            )
        return self.out.result()

    def _reserved(self, c: str) -> ApiError:
        return entity_error(
            f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
        )

    def _marker(self, i: int) -> tuple[str | None, int]:
        t = self.text
        if t.startswith("__", i):
            return "underline", 2
        if t.startswith("||", i):
            return "spoiler", 2
        return {"*": "bold", "_": "italic", "~": "strikethrough"}.get(t[i]), 1

    def _toggle(self, kind: str, i: int) -> None:
        if self.stack and self.stack[-1][0] == kind:
            _, start, _ = self.stack.pop()
            self.out.entity(kind, start)
            return
        if any(k == kind for k, _, _ in self.stack):
            top, _, byte = self.stack[-1]
            raise entity_error(
                f"Can't find end of {MDV2_NAMES.get(top, top)} entity at byte offset {byte}"
            )
        self.stack.append((kind, self.out.u16, _byte_offset(self.text, i)))

    def _scan_until(self, i: int, closer: str) -> tuple[str, int] | None:
        """Read escaped content from `i` up to `closer`; return (content, index after closer)."""
        t, buf = self.text, []
        while i < len(t):
            if t[i] == "\\" and i + 1 < len(t):
                buf.append(t[i + 1])
                i += 2
                continue
            if t.startswith(closer, i):
                return "".join(buf), i + len(closer)
            buf.append(t[i])
            i += 1
        return None

    def _code(self, i: int) -> int:
        pre = self.text.startswith("```", i)
        found = self._scan_until(i + (3 if pre else 1), "```" if pre else "`")
        if found is None:
            name = "Pre" if pre else "Code"
            raise entity_error(
                f"Can't find end of {name} entity at byte offset {_byte_offset(self.text, i)}"
            )
        content, after = found
        start = self.out.u16
        if pre:
            language = ""
            first, sep, rest = content.partition("\n")
            if sep and first and not any(ch.isspace() for ch in first):
                language, content = first, rest
            self.out.add(content)
            self.out.entity("pre", start, **({"language": language} if language else {}))
        else:
            self.out.add(content)
            self.out.entity("code", start)
        return after

    def _link_end(self, i: int) -> int:
        t = self.text
        _, start, byte = self.stack.pop()
        if not t.startswith("(", i + 1):
            raise entity_error(f"Can't find end of TextUrl entity at byte offset {byte}")
        found = self._scan_until(i + 2, ")")
        if found is None:
            raise entity_error(f"Can't find end of a URL at byte offset {_byte_offset(t, i + 1)}")
        url, after = found
        self.out.entity("text_link", start, url=url)
        return after


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^>]*)?)\s*/?>")
_ATTR = re.compile(r"""([a-zA-Z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


def _parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    stack: list[tuple[str, str, int, dict[str, Any]]] = []  # tag, kind, start, extra
    extra: dict[str, Any]
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "&":
            m = _ENTITY.match(text, i)
            if m:
                out.add(html.unescape(m.group(0)))
                i = m.end()
                continue
            out.add(c)
            i += 1
            continue
        if c != "<":
            out.add(c)
            i += 1
            continue
        m = _TAG.match(text, i)
        byte = _byte_offset(text, i)
        if m is None:
            raise entity_error(f"Unexpected end of name token at byte offset {byte}")
        closing, name = m.group(1) == "/", m.group(2).lower()
        if closing:
            if not stack:
                raise entity_error(f"Unexpected end tag at byte offset {byte}")
            tag, kind, start, extra = stack.pop()
            if tag != name:
                raise entity_error(f'Can\'t find end tag corresponding to start tag "{tag}"')
            out.entity(kind, start, **extra)
        else:
            if name not in HTML_TAGS:
                raise entity_error(f'Unsupported start tag "{name}" at byte offset {byte}')
            attrs = {
                a.group(1).lower(): a.group(2) or a.group(3) or a.group(4) or ""
                for a in _ATTR.finditer(m.group(3))
            }
            extra = {}
            kind = HTML_TAGS[name]
            if name == "a":
                extra = {"url": attrs.get("href", "")}
            elif name == "span" and attrs.get("class") != "tg-spoiler":
                raise entity_error(f'Unsupported start tag "{name}" at byte offset {byte}')
            elif name == "tg-emoji":
                extra = {"custom_emoji_id": attrs.get("emoji-id", "")}
            stack.append((name, kind, out.u16, extra))
        i = m.end()
    if stack:
        raise entity_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


def _parse_markdown(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Legacy Markdown: *bold* _italic_ `code` ```pre``` [text](url), no nesting."""
    out = _Builder()
    i, n = 0, len(text)
    closers = {"*": ("*", "bold"), "_": ("_", "italic"), "`": ("`", "code")}
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "*_`[":
            out.add(text[i + 1])
            i += 2
            continue
        if text.startswith("```", i) or c in closers or c == "[":
            pre = text.startswith("```", i)
            if c == "[":
                end = text.find("](", i + 1)
                close = text.find(")", end + 2) if end != -1 else -1
                if end == -1 or close == -1:
                    raise entity_error(
                        f"Can't find end of the entity starting at byte offset {_byte_offset(text, i)}"
                    )
                start = out.u16
                out.add(text[i + 1 : end])
                out.entity("text_link", start, url=text[end + 2 : close])
                i = close + 1
                continue
            closer, kind = ("```", "pre") if pre else closers[c]
            end = text.find(closer, i + len(closer))
            if end == -1:
                raise entity_error(
                    f"Can't find end of the entity starting at byte offset {_byte_offset(text, i)}"
                )
            start = out.u16
            out.add(text[i + len(closer) : end])
            out.entity(kind, start)
            i = end + len(closer)
            continue
        out.add(c)
        i += 1
    return out.result()
