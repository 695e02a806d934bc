"""Bot API 10.2-10.4 additions the sandbox needs, on top of the vendored 10.1 spec.

This is the one place where the emulator's spec differs from ``data/bot-api-spec.json``; each
entry names the release it comes from. ``load_spec`` applies them; ``GET /sandbox/info`` lists
them. Drop an entry once the vendored spec has it.
"""

from __future__ import annotations

from typing import Any

VERSION_NOTE = "Bot API 10.1 + 10.2-10.4 additions (sandbox/spec_additions.py)"

# method or type name -> fields appended (a field already present is left alone)
FIELDS: dict[str, list[dict[str, Any]]] = {
    # Bot API 10.3: Telegram's own stop button on a streamed draft
    "sendMessageDraft": [
        {"name": "can_stop", "types": ["Boolean"], "required": False,
         "description": "Pass True to show the user a button to stop the generation (10.3)"},
        {"name": "keep_on_stop", "types": ["Boolean"], "required": False,
         "description": "Pass True to keep the draft shown when the user stops it (10.3)"},
    ],
    # Bot API 10.3: the update the stop button produces
    "Update": [
        {"name": "stopped_message_generation", "types": ["MessageGenerationStopped"],
         "required": False,
         "description": "Optional. A user stopped the generation of a message draft (10.3)"},
    ],
}  # fmt: skip

# new types
TYPES: dict[str, dict[str, Any]] = {
    "MessageGenerationStopped": {
        "name": "MessageGenerationStopped",
        "description": ["This object describes an update about a user stopping message "
                        "generation (Bot API 10.3)."],
        "fields": [
            {"name": "chat", "types": ["Chat"], "required": True,
             "description": "Chat in which the message is generated"},
            {"name": "message_thread_id", "types": ["Integer"], "required": False,
             "description": "Optional. Message thread in which the message is generated"},
            {"name": "draft_id", "types": ["Integer"], "required": True,
             "description": "Unique identifier of the message draft which was stopped"},
        ],
    },
}  # fmt: skip


def apply(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the raw spec with the additions merged in (the input is not modified)."""
    methods = {k: dict(v) for k, v in raw["methods"].items()}
    types = {k: dict(v) for k, v in raw["types"].items()}
    for name, extra in FIELDS.items():
        target = methods.get(name) or types.get(name)
        if target is None:
            continue
        have = {f["name"] for f in target.get("fields", [])}
        target["fields"] = [*target.get("fields", []), *(f for f in extra if f["name"] not in have)]
    for name, spec in TYPES.items():
        types.setdefault(name, spec)
    return {**raw, "methods": methods, "types": types}
