"""The Bot API surface: ``/bot{token}/{method}``, checked against the spec, answered with the
real envelope, recorded, and subject to injected faults and flood limits."""

from __future__ import annotations

import asyncio
import copy
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sandbox import errors
from sandbox.errors import ApiError, bad_request
from sandbox.formatting import parse, utf16_len
from sandbox.params import read_params
from sandbox.spec import Spec, Validator
from sandbox.state import Chat, Fault, Sandbox

Handler = Callable[["BotApi", dict[str, Any]], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
NOT_FLOOD_LIMITED = {"sendchataction"}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name.lower()] = fn
        return fn

    return register


def envelope(result: Any, description: str | None = None) -> Response:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return Response(orjson.dumps(body), media_type="application/json")


def error_response(err: ApiError) -> Response:
    headers = {}
    if err.parameters and "retry_after" in err.parameters:
        headers["Retry-After"] = str(err.parameters["retry_after"])
    return Response(
        orjson.dumps(err.body()),
        status_code=err.code,
        media_type="application/json",
        headers=headers,
    )


class DroppedResponse(Response):
    """Starts a response and aborts mid-body, so the client sees the connection die.

    ASGI has no "close without answering"; raising before the start would make uvicorn send a
    500, but raising after it makes the server drop the connection, which is what we want.
    """

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok":', "more_body": True})
        raise ConnectionAbortedError("sandbox fault: connection dropped on purpose")


class BotApi:
    def __init__(self, sandbox: Sandbox, spec: Spec) -> None:
        self.sandbox = sandbox
        self.spec = spec
        self.validator = Validator(spec)
        self.poll_generation = 0
        self.current_method = ""

    async def endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        name = request.path_params["method"]
        try:
            raw = await read_params(request)
        except ApiError as err:
            return error_response(err)
        method = self.spec.method(name)
        rec = self.sandbox.record(method.name if method else name, raw)
        response = await self._call(token, method.name if method else None, raw, rec.params)
        if isinstance(response, DroppedResponse):
            rec.status, rec.ok, rec.description = 0, False, "connection dropped"
        else:
            rec.status = response.status_code
            rec.ok = response.status_code == 200
            if not rec.ok:
                rec.description = orjson.loads(response.body).get("description")
        return response

    async def _call(
        self,
        token: str,
        method: str | None,
        raw: dict[str, Any],
        recorded: MutableMapping[str, Any],
    ) -> Response:
        if not secrets.compare_digest(token.encode(), self.sandbox.config.bot_token.encode()):
            return error_response(errors.UNAUTHORIZED)
        if method is None:
            return error_response(errors.NOT_FOUND)
        faulted = await self._apply_faults(method)
        if faulted is not None:
            return faulted
        spec = self.spec.methods[method]
        try:
            params = self.validator.validate_call(spec, raw)
            recorded.clear()
            recorded.update(params)
            fn = HANDLERS.get(method.lower())
            if fn is None:
                return error_response(
                    ApiError(501, f"Not Implemented: the sandbox does not emulate {method}")
                )
            self.current_method = method
            result = await fn(self, params)
        except ApiError as err:
            if err.code == 429:
                self.sandbox.flood_refusals += 1
            return error_response(err)
        if isinstance(result, tuple):
            return envelope(result[0], result[1])
        return envelope(result)

    async def _apply_faults(self, method: str) -> Response | None:
        for fault in self.sandbox.take_fault(method):
            rec = self.sandbox.calls[-1]
            rec.fault = fault.kind
            response = await self._fault_response(fault)
            if response is not None:
                return response
        return None

    async def _fault_response(self, fault: Fault) -> Response | None:
        if fault.kind == "latency":
            await asyncio.sleep(fault.latency)
            return None
        if fault.kind == "flood":
            err = errors.too_many_requests(fault.retry_after)
            self.sandbox.flood_refusals += 1
            return error_response(err)
        if fault.kind == "hang":
            await asyncio.sleep(fault.hang_seconds)
            return DroppedResponse()
        if fault.kind == "drop":
            return DroppedResponse()
        body = fault.body or {**errors.INTERNAL, "error_code": fault.status}
        return Response(orjson.dumps(body), status_code=fault.status, media_type="application/json")

    # shared helpers ---------------------------------------------------------------------
    def chat(self, chat_id: Any) -> Chat:
        chat = self.sandbox.chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise bad_request(errors.CHAT_NOT_FOUND_TEXT)
        if chat.user is not None and chat.user.blocked:
            raise errors.BLOCKED
        return chat

    def flood_check(self, chat: Chat) -> None:
        if self.current_method.lower() in NOT_FLOOD_LIMITED:
            return
        wait = self.sandbox.flood.acquire(chat.id)
        if wait > 0:
            raise errors.too_many_requests(wait)

    def base_message(self, chat: Chat, params: dict[str, Any]) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": chat.take_message_id(),
            "from": self.sandbox.bot_user(),
            "chat": chat.to_api(),
            "date": int(time.time()),
        }
        reply_to = _reply_target(params)
        if reply_to is not None:
            target = chat.find(reply_to)
            if target is not None:
                msg["reply_to_message"] = {
                    k: v for k, v in target.items() if k != "reply_to_message"
                }
            elif not _allow_without_reply(params):
                raise bad_request("message to be replied not found")
        return msg

    def finish(self, chat: Chat, msg: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
        self.sandbox.append_message(chat, msg)
        return copy.deepcopy(msg)

    def editable(self, params: dict[str, Any]) -> tuple[Chat, dict[str, Any]] | None:
        if params.get("inline_message_id"):
            return None
        if "chat_id" not in params:
            raise bad_request("chat_id is empty")
        if "message_id" not in params:
            raise bad_request("message identifier is not specified")
        chat = self.chat(params["chat_id"])
        msg = chat.find(params["message_id"])
        if msg is None:
            raise bad_request("message to edit not found")
        if not msg.get("from", {}).get("is_bot"):
            raise bad_request("message can't be edited")
        return chat, msg

    def apply_edit(
        self, chat: Chat, msg: dict[str, Any], changes: dict[str, Any]
    ) -> dict[str, Any]:
        before = {k: msg.get(k) for k in changes}
        if before == changes:
            raise bad_request(NOT_MODIFIED)
        for key, value in changes.items():
            if value is None:
                msg.pop(key, None)
            else:
                msg[key] = value
        msg["edit_date"] = int(time.time())
        self.sandbox.events.publish({"type": "edit", "chat_id": chat.id, "message": msg})
        return copy.deepcopy(msg)


def _reply_target(params: dict[str, Any]) -> int | None:
    rp = params.get("reply_parameters")
    if isinstance(rp, dict) and isinstance(rp.get("message_id"), int):
        return int(rp["message_id"])
    return None


def _allow_without_reply(params: dict[str, Any]) -> bool:
    rp = params.get("reply_parameters")
    return bool(isinstance(rp, dict) and rp.get("allow_sending_without_reply"))


def parsed_text(text: str, params: dict[str, Any], entities_key: str) -> tuple[str, list[Any]]:
    """Text and entities after parse_mode (explicit entities win, as on Telegram)."""
    if params.get(entities_key):
        return text, list(params[entities_key])
    return parse(text, params.get("parse_mode"))


# handlers -----------------------------------------------------------------------------
@handler("getMe")
async def get_me(api: BotApi, params: dict[str, Any]) -> Any:
    return {
        **api.sandbox.bot_user(),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


@handler("sendMessage")
async def send_message(api: BotApi, params: dict[str, Any]) -> Any:
    chat = api.chat(params["chat_id"])
    text, entities = parsed_text(params["text"], params, "entities")
    if not text.strip():
        raise bad_request("message text is empty")
    if utf16_len(text) > 4096:
        raise bad_request("message is too long")
    api.flood_check(chat)
    msg = api.base_message(chat, params)
    msg["text"] = text
    if entities:
        msg["entities"] = entities
    return api.finish(chat, msg, params)


def _file(kind: str, value: Any) -> dict[str, Any]:
    token = secrets.token_urlsafe(12)
    base = {"file_id": f"sandbox-{kind}-{token}", "file_unique_id": token[:12]}
    if isinstance(value, dict) and "size" in value:
        base["file_size"] = value["size"]
    return base


def _media_object(kind: str, value: Any, params: dict[str, Any]) -> Any:
    if kind == "photo":
        return [
            {**_file("photo", value), "width": 90, "height": 90},
            {**_file("photo", value), "width": 800, "height": 800},
        ]
    if kind == "sticker":
        return {
            **_file("sticker", value),
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": params.get("emoji") or "🙂",
        }
    return _file(kind, value)


def _media_handler(kind: str) -> Handler:
    async def send_media(api: BotApi, params: dict[str, Any]) -> Any:
        chat = api.chat(params["chat_id"])
        caption, entities = parsed_text(params.get("caption") or "", params, "caption_entities")
        if utf16_len(caption) > 1024:
            raise bad_request("message caption is too long")
        api.flood_check(chat)
        msg = api.base_message(chat, params)
        msg[kind] = _media_object(kind, params[kind], params)
        if caption:
            msg["caption"] = caption
        if entities:
            msg["caption_entities"] = entities
        return api.finish(chat, msg, params)

    return send_media


for _kind in ("photo", "document", "sticker", "video", "audio", "voice", "animation"):
    handler("send" + _kind.capitalize())(_media_handler(_kind))


@handler("sendChatAction")
async def send_chat_action(api: BotApi, params: dict[str, Any]) -> Any:
    chat = api.chat(params["chat_id"])
    if params["action"] not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    api.sandbox.set_typing(chat, params["action"])
    return True


@handler("answerCallbackQuery")
async def answer_callback_query(api: BotApi, params: dict[str, Any]) -> Any:
    query = api.sandbox.callback_queries.pop(params["callback_query_id"], None)
    if query is None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = params.get("text")
    if text is not None and len(text) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    answer = {
        "callback_query_id": params["callback_query_id"],
        "chat_id": query["chat_id"],
        "message_id": query["message_id"],
        "text": text,
        "show_alert": bool(params.get("show_alert")),
        "url": params.get("url"),
    }
    api.sandbox.callback_answers.append(answer)
    api.sandbox.events.publish({"type": "callback_answer", **answer})
    return True


@handler("editMessageText")
async def edit_message_text(api: BotApi, params: dict[str, Any]) -> Any:
    text, entities = parsed_text(params["text"], params, "entities")
    if not text.strip():
        raise bad_request("message text is empty")
    if utf16_len(text) > 4096:
        raise bad_request("message is too long")
    target = api.editable(params)
    if target is None:
        return True
    chat, msg = target
    markup = params.get("reply_markup")
    changes = {
        "text": text,
        "entities": entities or None,
        "reply_markup": markup
        if isinstance(markup, dict) and "inline_keyboard" in markup
        else None,
    }
    return api.apply_edit(chat, msg, changes)


@handler("editMessageReplyMarkup")
async def edit_message_reply_markup(api: BotApi, params: dict[str, Any]) -> Any:
    target = api.editable(params)
    if target is None:
        return True
    chat, msg = target
    markup = params.get("reply_markup")
    keep = markup if isinstance(markup, dict) and markup.get("inline_keyboard") else None
    return api.apply_edit(chat, msg, {"reply_markup": keep})


@handler("deleteMessage")
async def delete_message(api: BotApi, params: dict[str, Any]) -> Any:
    chat = api.chat(params["chat_id"])
    msg = chat.find(params["message_id"])
    if msg is None:
        raise bad_request("message to delete not found")
    chat.messages.remove(msg)
    api.sandbox.events.publish(
        {"type": "delete", "chat_id": chat.id, "message_id": params["message_id"]}
    )
    return True


@handler("setWebhook")
async def set_webhook(api: BotApi, params: dict[str, Any]) -> Any:
    url = params["url"].strip()
    secret = params.get("secret_token")
    if secret is not None and not SECRET_RE.match(secret):
        raise bad_request("secret token contains unallowed characters")
    if url and not re.match(r"^https?://[^\s/]+", url):
        raise bad_request("bad webhook: Failed to resolve host: Name or service not known")
    if params.get("drop_pending_updates"):
        api.sandbox.pending.clear()
    hook = api.sandbox.webhook
    if not url:
        hook.url, hook.secret_token = "", None
        api.sandbox.wake()
        return True, "Webhook was deleted"
    already = hook.url == url and hook.secret_token == secret
    hook.url, hook.secret_token = url, secret
    hook.max_connections = int(params.get("max_connections") or 40)
    hook.allowed_updates = params.get("allowed_updates", hook.allowed_updates)
    hook.last_error_date = hook.last_error_message = None
    api.sandbox.wake()
    return True, "Webhook is already set" if already else "Webhook was set"


@handler("deleteWebhook")
async def delete_webhook(api: BotApi, params: dict[str, Any]) -> Any:
    if params.get("drop_pending_updates"):
        api.sandbox.pending.clear()
    hook = api.sandbox.webhook
    was_set = bool(hook.url)
    hook.url, hook.secret_token = "", None
    api.sandbox.wake()
    return True, "Webhook was deleted" if was_set else "Webhook is already deleted"


@handler("getWebhookInfo")
async def get_webhook_info(api: BotApi, params: dict[str, Any]) -> Any:
    hook = api.sandbox.webhook
    info: dict[str, Any] = {
        "url": hook.url,
        "has_custom_certificate": False,
        "pending_update_count": len(api.sandbox.pending),
    }
    if hook.url:
        info["max_connections"] = hook.max_connections
        info["ip_address"] = "127.0.0.1"
        if hook.allowed_updates is not None:
            info["allowed_updates"] = hook.allowed_updates
    if hook.last_error_date is not None:
        info["last_error_date"] = hook.last_error_date
        info["last_error_message"] = hook.last_error_message
    return info


@handler("getUpdates")
async def get_updates(api: BotApi, params: dict[str, Any]) -> Any:
    sandbox = api.sandbox
    if sandbox.webhook.url:
        raise errors.WEBHOOK_CONFLICT
    offset = params.get("offset")
    if offset:
        if offset > 0:
            while sandbox.pending and _uid(sandbox.pending[0]) < offset:
                sandbox.pending.popleft()
        else:
            while len(sandbox.pending) > -offset:
                sandbox.pending.popleft()
    limit = min(max(int(params.get("limit") or 100), 1), 100)
    timeout = min(max(float(params.get("timeout") or 0), 0.0), sandbox.config.max_long_poll)
    api.poll_generation += 1
    generation = api.poll_generation
    sandbox.wake()  # an older long poll still waiting gets terminated, as on Telegram
    deadline = time.monotonic() + timeout
    while not sandbox.pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        changed = sandbox.updates_changed
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            break
        if api.poll_generation != generation:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        if sandbox.webhook.url:
            raise errors.WEBHOOK_CONFLICT
    return [copy.deepcopy(u) for u in list(sandbox.pending)[:limit]]


def _uid(update: dict[str, Any]) -> int:
    uid = update.get("update_id")
    return uid if isinstance(uid, int) else 0
