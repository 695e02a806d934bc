"""The gateway's three peers in one uvicorn process, built to hide nothing (issue 13).

Telegram under ``/tg``, the User Service under ``/users``, the Agent Service under ``/agent``,
and ``/control`` for the harness. One process because the harness needs one consistent record
of everything the gateways did, with one clock, and because a 2-core CI box should not spend its
time starting services.

What makes it a chaos stand-in rather than a mock:

- Telegram enforces flood limits as token buckets (per chat ~1/s burst 3, groups 20/min, bot-wide
  30/s with a burst of 8) and answers Telegram's own 429 body, and injects faults on
  ``sendMessage`` (2 % 429 ``retry_after 1``, 2 % 502). Limit refusals and injected faults are
  counted apart: the first is the gateway's pacing failing, the second is weather.
- The User Service stores every ``POST /api/interactions``, replays included, with no unique
  key: a history row the gateway writes twice shows up twice, as it would in a User Service whose
  table has no constraint.
- The agent answers ``"re: " + text`` (every part's text when the request has ``parts``) after a
  seeded random 0–400 ms, so every reply names the message(s) it answers.

Every base may carry one extra path segment, a *tag* (``/tg/gw0-3/bot<token>/sendMessage``): the
harness gives each gateway incarnation its own tag, so each record says which process made the
call (who sent the duplicate, who wrote the second row, which kill interrupted which send).

Configuration comes from ``CHAOS_*`` environment variables (see `PeersConfig.from_env`); start it
with ``uvicorn --factory tests.chaos.peers:create_app`` (the harness does, via `ServerProcess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

JSON = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]

#: Methods that send or change a message and so count against Telegram's flood limits.
LIMITED_METHODS = frozenset({"sendMessage", "editMessageText", "sendMessageDraft"})


@dataclass(frozen=True)
class PeersConfig:
    """Limits, fault rates and delays; every field has a ``CHAOS_<FIELD>`` variable."""

    seed: int = 0
    bot_token: str = ""  # when set, Telegram calls with another token get 401
    bot_rate: float = 30.0
    bot_burst: float = 8.0
    chat_rate: float = 1.0
    chat_burst: float = 3.0
    group_per_minute: float = 20.0
    group_burst: float = 3.0
    # Loopback jitter: a request this much early for a token is still accepted.
    limit_tolerance: float = 0.01
    fault_429: float = 0.02
    fault_502: float = 0.02
    agent_max_delay: float = 0.4
    # When > 0, the agent holds its answers until this many calls wait (or 10 s pass), then
    # answers them all at once: replies for many chats released together (`bench.scale`).
    agent_gate: int = 0
    # Real services are not instant; a 1 ms stand-in hides races that latency opens (a kill
    # during a history write the service then commits). Telegram's latency, spent before the
    # message counts as sent, is off by default: a kill while a sendMessage is in flight always
    # duplicates that reply (the Bot API has no idempotency key), so with real-world latency
    # (50-300 ms) the "at most 1 duplicate per 20 kills" measures luck, not the gateway.
    telegram_latency: float = 0.0
    users_latency: float = 0.02

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> PeersConfig:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            raw = source.get(f"CHAOS_{name.upper()}")
            if raw is not None and raw != "":
                values[name] = type(default)(raw)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        return {f"CHAOS_{k.upper()}": str(v) for k, v in asdict(self).items()}


@dataclass
class Bucket:
    """Telegram-style token bucket: `rate` per second, `burst` saved up, starts full."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0.0: one is available now)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class Record:
    """Everything the peers saw since start (or the last reset). Single event loop: no locks."""

    sends: list[JSON] = field(default_factory=list)  # accepted sendMessage
    edits: list[JSON] = field(default_factory=list)  # accepted editMessageText / drafts
    refusals: list[JSON] = field(default_factory=list)  # flood-limit 429s ("pacing 429")
    injected: list[JSON] = field(default_factory=list)  # injected 429 / 502
    methods: Counter[str] = field(default_factory=Counter)  # every Telegram call by method
    callback_answers: list[JSON] = field(default_factory=list)
    users: dict[int, JSON] = field(default_factory=dict)  # telegram_id -> user
    interactions: list[JSON] = field(default_factory=list)  # every history write, replays too
    agent_calls: list[JSON] = field(default_factory=list)


def _now() -> tuple[float, float]:
    return time.monotonic(), time.time()


def _tg_error(code: int, description: str, retry_after: int | None = None) -> Response:
    body: JSON = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JSONResponse(body, status_code=code)


def _tg_ok(result: Any) -> Response:
    return JSONResponse({"ok": True, "result": result})


class Peers:
    def __init__(self, config: PeersConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.record = Record()
        self.buckets: dict[str, Bucket] = {}
        self.next_message_id: dict[int, int] = {}
        self.next_user_id = 1
        self.next_row_id = 1
        # Separate streams: fault decisions do not shift when agent timing changes.
        self.fault_rng = random.Random(f"{self.config.seed}:faults")
        self.agent_rng = random.Random(f"{self.config.seed}:agent")
        self.latency_rng = random.Random(f"{self.config.seed}:latency")
        self.gate_waiting = 0
        self.gate_open = asyncio.Event()

    async def _latency(self, most: float) -> None:
        if most > 0:
            await asyncio.sleep(self.latency_rng.uniform(0.0, most))

    # --- Telegram ---------------------------------------------------------------------------

    def _bucket(self, key: str, rate: float, burst: float, now: float) -> Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(rate, burst, burst, now)
        return bucket

    def _flood(self, chat_id: int, now: float) -> tuple[str, float] | None:
        """(cause, seconds to wait) when a limit refuses this message; else take the tokens."""
        c = self.config
        buckets = {
            "bot": self._bucket("bot", c.bot_rate, c.bot_burst, now),
            "chat": self._bucket(f"chat:{chat_id}", c.chat_rate, c.chat_burst, now),
        }
        if chat_id < 0:
            buckets["group"] = self._bucket(
                f"group:{chat_id}", c.group_per_minute / 60.0, c.group_burst, now
            )
        waits = {cause: b.wait(now) for cause, b in buckets.items()}
        cause, wait = max(waits.items(), key=lambda kv: kv[1])
        if wait > c.limit_tolerance:
            return cause, wait
        for bucket in buckets.values():
            bucket.tokens -= 1
        return None

    async def telegram(self, request: Request) -> Response:
        method = request.path_params["method"]
        tag = request.path_params.get("tag")
        self.record.methods[method] += 1
        if self.config.bot_token and request.path_params["token"] != self.config.bot_token:
            return _tg_error(401, "Unauthorized")
        try:
            params = await request.json() if await request.body() else {}
        except ValueError:
            return _tg_error(400, "Bad Request: invalid JSON")
        if not isinstance(params, dict):
            return _tg_error(400, "Bad Request: parameters must be an object")
        await self._latency(self.config.telegram_latency)
        if method in LIMITED_METHODS:
            return self._limited(method, params, tag)
        if method == "getMe":
            return _tg_ok(
                {"id": 7000001, "is_bot": True, "first_name": "Chaos", "username": "chaos_bot"}
            )
        if method == "getUpdates":
            return _tg_ok([])
        if method == "answerCallbackQuery":
            self.record.callback_answers.append(
                {"id": params.get("callback_query_id"), "mono": time.monotonic(), "tag": tag}
            )
        # setWebhook, deleteWebhook, sendChatAction, setMyCommands and anything else.
        return _tg_ok(True)

    def _limited(self, method: str, params: JSON, tag: str | None) -> Response:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, TypeError, ValueError):
            return _tg_error(400, "Bad Request: chat_id is required")
        text = params.get("text")
        if method != "sendMessageDraft" and (not isinstance(text, str) or not text):
            return _tg_error(400, "Bad Request: message text is empty")
        mono, wall = _now()
        if method == "sendMessage":
            roll = self.fault_rng.random()
            if roll < self.config.fault_429:
                self.record.injected.append(
                    {"kind": "429", "chat_id": chat_id, "mono": mono, "tag": tag}
                )
                return _tg_error(429, "Too Many Requests: retry after 1", retry_after=1)
            if roll < self.config.fault_429 + self.config.fault_502:
                self.record.injected.append(
                    {"kind": "502", "chat_id": chat_id, "mono": mono, "tag": tag}
                )
                return _tg_error(502, "Bad Gateway")
        refused = self._flood(chat_id, mono)
        if refused is not None:
            cause, wait = refused
            retry = max(1, math.ceil(wait))
            self.record.refusals.append(
                {"method": method, "cause": cause, "chat_id": chat_id, "mono": mono, "tag": tag}
            )
            return _tg_error(429, f"Too Many Requests: retry after {retry}", retry_after=retry)
        if method == "sendMessageDraft":
            self.record.edits.append(
                {"method": method, "chat_id": chat_id, "mono": mono, "tag": tag}
            )
            return _tg_ok(True)
        if method == "editMessageText":
            message_id = params.get("message_id")
            self.record.edits.append(
                {
                    "method": method,
                    "chat_id": chat_id,
                    "message_id": message_id,
                    "mono": mono,
                    "tag": tag,
                }
            )
            return _tg_ok(
                {"message_id": message_id, "chat": {"id": chat_id}, "date": int(wall), "text": text}
            )
        # Bot messages get ids of their own range, so they never look like a user's message id.
        message_id = self.next_message_id.get(chat_id, 1_000_000) + 1
        self.next_message_id[chat_id] = message_id
        # The answer's time is taken last: the send window is measured from here.
        mono, wall = _now()
        self.record.sends.append(
            {
                "chat_id": chat_id,
                "text": text,
                "message_id": message_id,
                "mono": mono,
                "wall": wall,
                "tag": tag,
            }
        )
        return _tg_ok(
            {"message_id": message_id, "chat": {"id": chat_id}, "date": int(wall), "text": text}
        )

    # --- User Service -----------------------------------------------------------------------

    def _user_by_id(self, user_id: str) -> JSON | None:
        for user in self.record.users.values():
            if str(user["id"]) == user_id:
                return user
        return None

    async def user_by_telegram(self, request: Request) -> Response:
        await self._latency(self.config.users_latency)
        try:
            telegram_id = int(request.path_params["telegram_id"])
        except ValueError:
            return JSONResponse({"detail": "telegram_id must be an integer"}, status_code=400)
        user = self.record.users.get(telegram_id)
        if user is None:
            return JSONResponse({"detail": "user not found"}, status_code=404)
        return JSONResponse(user)

    async def register(self, request: Request) -> Response:
        await self._latency(self.config.users_latency)
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("telegram_id"), int):
            return JSONResponse({"detail": "telegram_id (integer) is required"}, status_code=422)
        telegram_id = body["telegram_id"]
        existing = self.record.users.get(telegram_id)
        if existing is not None:
            return JSONResponse(
                {"message": "user already registered", "user": existing}, status_code=409
            )
        user = {
            "id": self.next_user_id,
            "telegram_id": telegram_id,
            "full_name": body.get("full_name"),
            "phone": body.get("phone"),
            "email": body.get("email"),
        }
        self.next_user_id += 1
        self.record.users[telegram_id] = user
        return JSONResponse(user, status_code=201)

    async def log_interaction(self, request: Request) -> Response:
        await self._latency(self.config.users_latency)
        body = await request.json()
        if not isinstance(body, dict) or body.get("direction") not in ("in", "out"):
            return JSONResponse({"detail": "direction must be 'in' or 'out'"}, status_code=422)
        if self._user_by_id(str(body.get("user_id"))) is None:
            return JSONResponse({"detail": "user not found"}, status_code=404)
        mono, wall = _now()
        metadata = body.get("metadata")
        row = {
            "id": self.next_row_id,
            "user_id": str(body["user_id"]),
            "telegram_message_id": body.get("telegram_message_id"),
            "direction": body["direction"],
            "message_text": body.get("message_text"),
            "chat_id": body.get("chat_id"),
            "metadata": metadata if isinstance(metadata, dict) else None,
            "created_at": wall,
            "mono": mono,
            "tag": request.path_params.get("tag"),
        }
        self.next_row_id += 1
        # No unique key, on purpose: a replayed write is a second row.
        self.record.interactions.append(row)
        return JSONResponse(row, status_code=201)

    async def interactions(self, request: Request) -> Response:
        await self._latency(self.config.users_latency)
        user_id = request.path_params["user_id"]
        if self._user_by_id(user_id) is None:
            return JSONResponse({"detail": "user not found"}, status_code=404)
        q = request.query_params
        try:
            limit = int(q.get("limit", "20"))
            message_id = int(q["telegram_message_id"]) if q.get("telegram_message_id") else None
            chat_id = int(q["chat_id"]) if q.get("chat_id") else None
        except ValueError:
            return JSONResponse(
                {"detail": "limit, telegram_message_id and chat_id are integers"}, status_code=422
            )
        rows = [
            r
            for r in reversed(self.record.interactions)
            if r["user_id"] == user_id
            and (message_id is None or r["telegram_message_id"] == message_id)
            and (chat_id is None or r["chat_id"] == chat_id)
        ]
        return JSONResponse(rows[: max(1, min(limit, 1000))])

    # --- Agent ------------------------------------------------------------------------------

    async def respond(self, request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            return JSONResponse({"detail": "body must be an object"}, status_code=422)
        texts = _part_texts(body.get("parts"))
        if not texts:
            texts = [str(body.get("text") or "")]
        delay = self.agent_rng.uniform(0.0, self.config.agent_max_delay)
        mono, _ = _now()
        self.record.agent_calls.append(
            {
                "texts": texts,
                "chat_id": body.get("chat_id"),
                "message_id": body.get("message_id"),
                "delay": delay,
                "mono": mono,
                "tag": request.path_params.get("tag"),
            }
        )
        await asyncio.sleep(delay)
        if self.config.agent_gate > 0:
            await self._gate()
        return JSONResponse({"reply": "re: " + " | ".join(texts)})

    async def _gate(self) -> None:
        self.gate_waiting += 1
        if self.gate_waiting >= self.config.agent_gate:
            self.gate_open.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gate_open.wait(), timeout=10)

    # --- control ----------------------------------------------------------------------------

    async def report(self, _: Request) -> Response:
        r = self.record
        return JSONResponse(
            {
                "sends": r.sends,
                "edits": r.edits,
                "refusals": r.refusals,
                "refusals_by_cause": dict(Counter(x["cause"] for x in r.refusals)),
                "injected_429": sum(1 for x in r.injected if x["kind"] == "429"),
                "injected_502": sum(1 for x in r.injected if x["kind"] == "502"),
                "injected": r.injected,
                "methods": dict(r.methods),
                "callback_answers": r.callback_answers,
                "users": list(r.users.values()),
                "interactions": [_slim(row) for row in r.interactions],
                "agent_calls": r.agent_calls,
                "config": asdict(self.config) | {"bot_token": "***"},
            }
        )

    async def reset_endpoint(self, _: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def health(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})


def _part_texts(parts: Any) -> list[str]:
    """Each part's own text, for requests that answer several messages in one turn."""
    if not isinstance(parts, list):
        return []
    texts = []
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part, str):
            texts.append(part)
    return texts


def _slim(row: JSON) -> JSON:
    """A history row for the report: the metadata keys the analysis reads, not the raw update."""
    meta = row.get("metadata") or {}
    keep = {k: meta[k] for k in ("update_id", "in_reply_to", "message_ids") if k in meta}
    return {**row, "metadata": keep}


def _both(path: str, prefix: str, handler: Handler, methods: list[str]) -> list[BaseRoute]:
    """The route without a tag, then with one (untagged first: a tag never reads as "api")."""
    return [
        Route(f"{prefix}{path}", handler, methods=methods),
        Route(f"{prefix}/{{tag}}{path}", handler, methods=methods),
    ]


def create_app(config: PeersConfig | None = None) -> Starlette:
    peers = Peers(config or PeersConfig.from_env())
    routes: list[BaseRoute] = [
        *_both("/bot{token}/{method}", "/tg", peers.telegram, ["POST", "GET"]),
        *_both("/api/users/by-telegram/{telegram_id}", "/users", peers.user_by_telegram, ["GET"]),
        *_both("/api/users/register", "/users", peers.register, ["POST"]),
        *_both("/api/interactions", "/users", peers.log_interaction, ["POST"]),
        *_both("/api/interactions/{user_id}", "/users", peers.interactions, ["GET"]),
        *_both("/api/respond", "/agent", peers.respond, ["POST"]),
        Route("/control/report", peers.report, methods=["GET"]),
        Route("/control/reset", peers.reset_endpoint, methods=["POST"]),
        Route("/control/health", peers.health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.peers = peers
    return app
