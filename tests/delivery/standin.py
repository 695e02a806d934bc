"""A small Telegram stand-in for the delivery tests: enforces the flood limits, injects faults.

Limits are token buckets like Telegram's (and the project sandbox's): 30/s per bot (burst 30),
1/s per chat (burst 3), 20/min per group; a request that would have to wait more than
`tolerance` gets 429 with ``retry_after``. Everything it receives is recorded with a monotonic
timestamp so tests can check order, exactly-once and timing. Runs uvicorn in a thread.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.servers import free_port


@dataclass
class Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float

    def wait(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class Fault:
    kind: str  # "429" | "500" | "hang" | "403" | "400"
    retry_after: int = 1
    seconds: float = 0.0
    description: str = ""


_MD_ALWAYS_ESCAPED = set(".!-=+#{}()>|")


def markdown_v2_ok(text: str) -> bool:
    """A rough MarkdownV2 check: reserved characters escaped, style markers balanced."""
    counts = {"*": 0, "_": 0, "~": 0, "`": 0}
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch in counts:
            counts[ch] += 1
        elif ch in _MD_ALWAYS_ESCAPED:
            return False
        i += 1
    return all(v % 2 == 0 for v in counts.values())


@dataclass
class StandIn:
    global_rate: float = 30.0
    global_burst: float = 30.0
    chat_rate: float = 1.0
    chat_burst: float = 3.0
    group_per_minute: float = 20.0
    tolerance: float = 0.05
    latency: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # 429s, injected or not
    errors: list[dict[str, Any]] = field(default_factory=list)  # other error answers
    faults: dict[int, list[Fault]] = field(default_factory=dict)
    always: dict[int, Fault] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, Bucket] = {}
        self.next_id: dict[int, int] = {}
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- control ----------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, chat_id: int, *faults: Fault) -> None:
        with self.lock:
            self.faults.setdefault(chat_id, []).extend(faults)

    def texts(self, chat_id: int) -> list[str]:
        with self.lock:
            return [m["text"] for m in self.messages if m["chat_id"] == chat_id]

    def pacing_429s(self) -> int:
        with self.lock:
            return sum(1 for r in self.rejected if not r["injected"])

    # --- server -----------------------------------------------------------------------------

    def start(self) -> StandIn:
        app = Starlette(routes=[Route("/bot{token}/{method}", self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)

    def _bucket(self, key: str, rate: float, burst: float, now: float) -> Bucket:
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = Bucket(rate, burst, burst, now)
        return b

    def _flood(self, chat_id: int, now: float) -> float:
        buckets = [
            self._bucket("bot", self.global_rate, self.global_burst, now),
            self._bucket(f"chat:{chat_id}", self.chat_rate, self.chat_burst, now),
        ]
        if chat_id < 0:
            buckets.append(self._bucket(f"group:{chat_id}", self.group_per_minute / 60, 20.0, now))
        wait = max(b.wait(now) for b in buckets)
        if wait > self.tolerance:
            return wait
        for b in buckets:
            b.tokens -= 1
        return 0.0

    async def _handle(self, request: Request) -> Response:
        method = request.path_params["method"]
        params: dict[str, Any] = await request.json()
        if self.latency:
            await asyncio.sleep(self.latency)
        if method == "getMe":
            return JSONResponse({"ok": True, "result": {"id": 1, "is_bot": True}})
        chat_id = int(params.get("chat_id", 0))
        now = time.monotonic()
        if method == "sendChatAction":
            with self.lock:
                self.actions.append({"chat_id": chat_id, "at": now, "action": params["action"]})
            return JSONResponse({"ok": True, "result": True})
        if method != "sendMessage":
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        with self.lock:
            queue = self.faults.get(chat_id)
            fault = queue.pop(0) if queue else self.always.get(chat_id)
        if fault is not None:
            return await self._fault(fault, chat_id, now)
        if chat_id in self.blocked:
            return self._error(403, "Forbidden: bot was blocked by the user", chat_id)
        mode = str(params.get("parse_mode") or "")
        if mode.lower() == "markdownv2" and not markdown_v2_ok(str(params["text"])):
            return self._error(
                400, "Bad Request: can't parse entities: character '.' is reserved", chat_id
            )
        with self.lock:
            wait = self._flood(chat_id, now)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                self.rejected.append({"chat_id": chat_id, "at": now, "injected": False})
                return JSONResponse(
                    {
                        "ok": False,
                        "error_code": 429,
                        "description": f"Too Many Requests: retry after {retry}",
                        "parameters": {"retry_after": retry},
                    },
                    429,
                )
            message_id = self.next_id.get(chat_id, 0) + 1
            self.next_id[chat_id] = message_id
            self.messages.append(
                {
                    "chat_id": chat_id,
                    "text": params["text"],
                    "parse_mode": params.get("parse_mode"),
                    "reply_markup": params.get("reply_markup"),
                    "reply_parameters": params.get("reply_parameters"),
                    "message_id": message_id,
                    "at": now,
                }
            )
        return JSONResponse(
            {
                "ok": True,
                "result": {
                    "message_id": message_id,
                    "chat": {"id": chat_id},
                    "date": int(time.time()),
                    "text": params["text"],
                },
            }
        )

    def _error(self, code: int, description: str, chat_id: int) -> Response:
        with self.lock:
            self.errors.append({"chat_id": chat_id, "code": code, "at": time.monotonic()})
        return JSONResponse({"ok": False, "error_code": code, "description": description}, code)

    async def _fault(self, fault: Fault, chat_id: int, now: float) -> Response:
        if fault.kind == "429":
            with self.lock:
                self.rejected.append({"chat_id": chat_id, "at": now, "injected": True})
            return JSONResponse(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {fault.retry_after}",
                    "parameters": {"retry_after": fault.retry_after},
                },
                429,
            )
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            return self._error(500, "Internal Server Error", chat_id)
        code = int(re.sub(r"\D", "", fault.kind) or 500)
        return self._error(code, fault.description or "Internal Server Error", chat_id)
