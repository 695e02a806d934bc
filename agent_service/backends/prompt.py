"""From a gateway turn to a Chat Completions `messages` list.

History becomes alternating user/assistant messages, oldest first, within a budget of
characters that drops the oldest first: characters, not tokens, because a tokenizer is
model-specific and this service fronts any model (English runs at about 4 characters a token).
Consecutive messages of one role are merged, since several chat templates (Mistral's, Gemma's)
reject two user messages in a row, and the gateway's history has them whenever a turn failed.
"""

from __future__ import annotations

from typing import Any

from agent_service.schemas import Attachment, RespondIn

ROLES = {"in": "user", "out": "assistant"}


def describe_attachment(a: Attachment) -> str:
    """An attachment as the model reads it: `[photo: image/jpeg, 245760 bytes, 1280x720, ...]`."""
    facts = [a.mime_type]
    if a.size is not None:
        facts.append(f"{a.size} bytes")
    if a.width and a.height:
        facts.append(f"{a.width}x{a.height}")
    if a.duration is not None:
        facts.append(f"{a.duration} s")
    if a.file_name:
        facts.append(f"file name {a.file_name!r}")
    if a.caption:
        facts.append(f"caption {a.caption!r}")
    if a.url:
        facts.append(f"url {a.url}")
    listed = ", ".join(f for f in facts if f)
    return f"[{a.kind}: {listed}]" if listed else f"[{a.kind}]"


def current_content(request: RespondIn) -> str:
    """The turn being answered, with what the model cannot see spelled out as text."""
    text = request.text
    if not text.strip() and request.parts:
        text = "\n".join(p.text for p in request.parts if p.text)
    if request.kind == "callback_query":
        text = f"(The person pressed the button whose data is {text!r}.)"
    lines = [text] if text.strip() else []
    lines += [describe_attachment(a) for a in request.attachments]
    return "\n".join(lines) or "(an empty message)"


def _merge_roles(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1] = {
                **merged[-1],
                "content": merged[-1]["content"] + "\n\n" + message["content"],
            }
        else:
            merged.append(dict(message))
    return merged


def history_messages(request: RespondIn, budget: int) -> list[dict[str, Any]]:
    """The history as messages, newest kept first until `budget` characters are used."""
    items = []
    for item in request.history:
        role = ROLES.get(item.direction or "")
        text = (item.text or "").strip()
        if role and text:
            items.append({"role": role, "content": text})
    kept: list[dict[str, Any]] = []
    used = 0
    for message in reversed(items):
        used += len(message["content"])
        if used > budget:
            break
        kept.append(message)
    kept.reverse()
    while kept and kept[0]["role"] != "user":  # a conversation opens with the person
        kept.pop(0)
    return kept


def build_messages(request: RespondIn, system_prompt: str, budget: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    body = history_messages(request, budget)
    body.append({"role": "user", "content": current_content(request)})
    return messages + _merge_roles(body)
