"""The Bot API surface: ``/bot{token}/{method}``, checked against the spec, answered with the
real envelope, recorded, and subject to injected faults and flood limits."""

from __future__ import annotations

import asyncio
import copy
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
from sandbox.formatting import parse
from sandbox.params import read_params
from sandbox.spec import Spec, Validator
from sandbox.state import Chat, Fault, Sandbox

Handler = Callable[["BotApi", dict[str, Any]], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)


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

    async def endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        name = request.path_params["method"]
        try:
            raw = await read_params(request)
        except ApiError as err:
            return error_response(err)
        staged = self._stage_uploads(raw)
        method = self.spec.method(name)
        rec = self.sandbox.record(method.name if method else name, raw)
        try:
            response = await self._call(token, method.name if method else None, raw, rec.params)
        finally:
            for key in staged:
                self.sandbox.files.take_staged(key)
        if isinstance(response, DroppedResponse):
            rec.status, rec.ok, rec.description = 0, False, "connection dropped"
        else:
            rec.status = response.status_code
            rec.ok = response.status_code == 200
            if not rec.ok:
                rec.description = orjson.loads(response.body).get("description")
        return response

    def _stage_uploads(self, raw: dict[str, Any]) -> list[str]:
        """Multipart file bytes wait in the file store (the call record keeps no bytes)."""
        keys = []
        for value in raw.values():
            if isinstance(value, dict) and isinstance(value.get("content"), bytes):
                value["staged"] = self.sandbox.files.stage(value.pop("content"))
                keys.append(value["staged"])
        return keys

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
            fn = handlers().get(method.lower())
            if fn is None:
                return error_response(
                    ApiError(501, f"Not Implemented: the sandbox does not emulate {method}")
                )
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
    def chat(self, chat_id: Any, params: dict[str, Any] | None = None) -> Chat:
        """The target chat; with ``business_connection_id``, the business owner's chat."""
        connection_id = (params or {}).get("business_connection_id")
        if connection_id:
            return self.business_chat(str(connection_id), chat_id)
        chat = self.sandbox.chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise bad_request(errors.CHAT_NOT_FOUND_TEXT)
        if chat.user is not None and chat.user.blocked:
            raise errors.BLOCKED
        return chat

    def business_chat(self, connection_id: str, chat_id: Any) -> Chat:
        connection = self.sandbox.business.get(connection_id)
        if connection is None or not connection.is_enabled:
            raise bad_request("BUSINESS_CONNECTION_INVALID")
        if not connection.can_reply:
            raise bad_request("BUSINESS_CONNECTION_NOT_ALLOWED")
        customer = self.sandbox.users.get(chat_id) if isinstance(chat_id, int) else None
        if customer is None:
            raise bad_request(errors.CHAT_NOT_FOUND_TEXT)
        return connection.chat_with(customer)

    def flood_check(self, chat: Chat) -> None:
        wait = self.sandbox.flood.acquire(chat.id)
        if wait > 0:
            raise errors.too_many_requests(wait)

    def edit_flood_check(self, chat: Chat) -> None:
        wait = self.sandbox.flood.acquire_edit(chat.id)
        if wait > 0:
            raise errors.too_many_requests(wait)

    def base_message(self, chat: Chat, params: dict[str, Any]) -> dict[str, Any]:
        """The bot's new message; checks come first, so a refused send uses no message id."""
        reply = None
        reply_to = _reply_target(params)
        if reply_to is not None:
            target = chat.find(reply_to)
            if target is not None:
                reply = {k: v for k, v in target.items() if k != "reply_to_message"}
            elif not _allow_without_reply(params):
                raise bad_request("message to be replied not found")
        msg: dict[str, Any] = {
            "message_id": chat.take_message_id(),
            "from": self.sandbox.bot_user(),
            "chat": chat.to_api(),
            "date": int(time.time()),
        }
        if chat.business_connection_id:
            # sent on behalf of the business account: the owner is the sender
            owner = self.sandbox.business[chat.business_connection_id].owner
            msg["from"] = owner.to_api()
            msg["sender_business_bot"] = self.sandbox.bot_user()
            msg["business_connection_id"] = chat.business_connection_id
        if isinstance(params.get("message_thread_id"), int):
            msg["message_thread_id"] = params["message_thread_id"]
        if reply is not None:
            msg["reply_to_message"] = reply
        return msg

    def finish(self, chat: Chat, msg: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """Store the bot's new message, end the drafts it replaces, echo business sends."""
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
        self.sandbox.append_message(chat, msg)
        if chat.type == "private" and not chat.business_connection_id:
            thread = msg.get("message_thread_id")
            for draft in self.sandbox.drafts.send_replaces(chat.id, thread, msg["message_id"]):
                self.sandbox.events.publish(
                    {"type": "draft_end", "chat_id": chat.id, "draft": draft.to_json()}
                )
        if chat.business_connection_id:
            self.sandbox.enqueue({"business_message": copy.deepcopy(msg)})
        return copy.deepcopy(msg)

    def editable(self, params: dict[str, Any]) -> tuple[Chat, dict[str, Any]] | None:
        if params.get("inline_message_id"):
            return None
        if "chat_id" not in params:
            raise bad_request("chat_id is empty")
        if "message_id" not in params:
            raise bad_request("message identifier is not specified")
        chat = self.chat(params["chat_id"], params)
        msg = chat.find(params["message_id"])
        if msg is None:
            raise bad_request("message to edit not found")
        if not _sent_by_bot(msg):
            raise bad_request("message can't be edited")
        return chat, msg

    def apply_edit(
        self, chat: Chat, msg: dict[str, Any], changes: dict[str, Any]
    ) -> dict[str, Any]:
        before = {k: msg.get(k) for k in changes}
        if before == changes:
            raise bad_request(NOT_MODIFIED)
        versions = chat.history.setdefault(msg["message_id"], [_version(msg)])
        for key, value in changes.items():
            if value is None:
                msg.pop(key, None)
            else:
                msg[key] = value
        msg["edit_date"] = int(time.time())
        versions.append(_version(msg))
        self.sandbox.events.publish({"type": "edit", "chat_id": chat.id, "message": msg})
        return copy.deepcopy(msg)


def _sent_by_bot(msg: dict[str, Any]) -> bool:
    """The bot's own message, including those it sent for a business account."""
    return bool(msg.get("from", {}).get("is_bot") or msg.get("sender_business_bot"))


def _version(msg: dict[str, Any]) -> dict[str, Any]:
    keys = ("text", "entities", "caption", "caption_entities", "reply_markup", "edit_date")
    return copy.deepcopy({k: msg[k] for k in keys if k in msg} | {"date": msg.get("date")})


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


def handlers() -> dict[str, Handler]:
    """Every emulated method (importing the method modules registers them)."""
    import sandbox.methods  # noqa: F401

    return HANDLERS
