"""Check Bot API calls against the machine-readable spec in ``data/bot-api-spec.json``.

Telegram coerces loosely (``"42"`` is a fine Integer, JSON-serialized objects may arrive as
strings in a form body) but rejects missing required parameters, values of the wrong type and
malformed objects. We do the same, recursively for object types, so that a client bug shows up
in the sandbox as the 400 it would cause in production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from sandbox import spec_additions
from sandbox.errors import ApiError, bad_request

PRIMITIVES = {"Integer", "Float", "Boolean", "String", "InputFile", "True"}
# Fields of InlineKeyboardButton that are decoration, not the button's action.
BUTTON_DECORATION = {"text", "icon_custom_emoji_id", "style"}
MISSING_MESSAGES = {"chat_id": "chat_id is empty", "text": "message text is empty"}
JSON_NAMES = {"reply_markup": "reply keyboard markup", "entities": "entities"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    types: tuple[str, ...]
    required: bool


@dataclass(frozen=True)
class TypeSpec:
    name: str
    fields: tuple[FieldSpec, ...] = ()
    subtypes: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


@dataclass
class Spec:
    version: str
    methods: dict[str, TypeSpec] = field(default_factory=dict)
    types: dict[str, TypeSpec] = field(default_factory=dict)
    lower: dict[str, TypeSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lower = {k.lower(): v for k, v in self.methods.items()}

    def method(self, name: str) -> TypeSpec | None:
        """Method names are case-insensitive on Telegram."""
        return self.lower.get(name.lower())


def _type_spec(raw: dict[str, Any]) -> TypeSpec:
    fields = tuple(
        FieldSpec(f["name"], tuple(f["types"]), bool(f.get("required")))
        for f in raw.get("fields", [])
    )
    return TypeSpec(raw["name"], fields, tuple(raw.get("subtypes", [])))


@cache
def load_spec() -> Spec:
    text = resources.files("sandbox").joinpath("data/bot-api-spec.json").read_text("utf-8")
    raw = spec_additions.apply(json.loads(text))
    return Spec(
        version=raw["version"],
        methods={k: _type_spec(v) for k, v in raw["methods"].items()},
        types={k: _type_spec(v) for k, v in raw["types"].items()},
    )


class Validator:
    """Coerces and checks one call's parameters; returns them typed."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def validate_call(self, method: TypeSpec, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in method.fields:
            value = params.get(f.name)
            if value is None or (value == "" and f.types != ("String",)):
                if f.required:
                    raise bad_request(
                        MISSING_MESSAGES.get(f.name, f'Parameter "{f.name}" is required')
                    )
                continue
            out[f.name] = self._top_level(f, value)
        return out

    def _top_level(self, f: FieldSpec, value: Any) -> Any:
        is_structured = any(t not in PRIMITIVES for t in f.types)
        if is_structured and isinstance(value, str) and not _has_primitive_string(f.types):
            try:
                value = json.loads(value)
            except ValueError:
                raise bad_request(
                    f"can't parse {JSON_NAMES.get(f.name, f.name)} JSON object"
                ) from None
        try:
            return self.coerce(value, f.types, f.name)
        except _Mismatch as exc:
            raise bad_request(exc.message) from None

    def coerce(self, value: Any, types: tuple[str, ...], name: str) -> Any:
        """Return `value` as the first of `types` it fits, or raise _Mismatch."""
        first: _Mismatch | None = None
        for t in types:
            try:
                return self._coerce_one(value, t, name)
            except ApiError:
                raise
            except _Mismatch as exc:
                first = first or exc
        assert first is not None
        raise first

    def _coerce_one(self, value: Any, t: str, name: str) -> Any:
        if t.startswith("Array of "):
            if not isinstance(value, list):
                raise _Mismatch(f'Field "{name}" must be an Array')
            inner = t.removeprefix("Array of ")
            return [self._coerce_one(v, inner, name) for v in value]
        if t == "Integer":
            if isinstance(value, bool):
                raise _Mismatch(f'Field "{name}" must be of type Integer')
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str) and _is_int(value):
                return int(value.strip())
            raise _Mismatch(f'Field "{name}" must be of type Integer')
        if t == "Float":
            if isinstance(value, bool):
                raise _Mismatch(f'Field "{name}" must be of type Float')
            if isinstance(value, (int, float)):
                return float(value)
            try:
                return float(str(value))
            except ValueError:
                raise _Mismatch(f'Field "{name}" must be of type Float') from None
        if t in ("Boolean", "True"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1"):
                return True
            if text in ("false", "0"):
                return False
            raise _Mismatch(f'Field "{name}" must be of type Boolean')
        if t == "String":
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise _Mismatch(f'Field "{name}" must be of type String')
        if t == "InputFile":
            # A file_id, URL or multipart upload; the sandbox stores no bytes.
            return value if isinstance(value, (str, dict)) else str(value)
        return self._object(value, t, name)

    def _object(self, value: Any, type_name: str, name: str) -> dict[str, Any]:
        spec = self.spec.types.get(type_name)
        if not isinstance(value, dict):
            raise _Mismatch(f'Field "{name}" must be of type {type_name}')
        if spec is None or spec.subtypes or not spec.fields:
            return value  # unions and unknown types: accepted as given
        missing = [r for r in spec.required if r not in value]
        if missing:
            raise _Mismatch(f'can\'t parse {type_name}: Field "{missing[0]}" must be present')
        out = dict(value)
        for f in spec.fields:
            if f.name in value and value[f.name] is not None:
                out[f.name] = self.coerce(value[f.name], f.types, f.name)
        if type_name == "InlineKeyboardButton":
            _check_button(out, {f.name for f in spec.fields} - BUTTON_DECORATION)
        return out


class _Mismatch(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _has_primitive_string(types: tuple[str, ...]) -> bool:
    return "String" in types or "InputFile" in types


def _is_int(text: str) -> bool:
    t = text.strip()
    return t.lstrip("-").isdigit() and t.count("-") <= 1 and not t.endswith("-")


def _check_button(button: dict[str, Any], action_fields: set[str]) -> None:
    """Telegram's own rules for one inline button (beyond the field types)."""
    actions = [k for k in button if k in action_fields and button[k] is not None]
    if not actions:
        raise bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if len(actions) > 1:
        raise bad_request(
            "can't parse inline keyboard button: exactly one of the optional fields must be used"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
