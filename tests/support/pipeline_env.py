"""A pipeline wired to a real inbox (SQLite or PostgreSQL) and in-memory neighbours.

For the turn, group, button and business tests: the User Service and delivery are the fakes of
`tests.support.fakes`, Telegram and the agent are `httpx.MockTransport`s that record every
call, and the turns' clock is a settable number, so a debounce or grace window is "waited"
by moving the clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from app.agent_client import AgentClient
from app.inbound.ingest import classify_update
from app.metrics import Metrics
from app.processing.addressing import BotIdentity, BotUser, GroupAddressing
from app.processing.callback_acker import CallbackAcker
from app.processing.cancel import Cancellations
from app.processing.feedback import ButtonFeedback
from app.processing.files import FileLinks
from app.processing.history import History
from app.processing.keyboards import InMemoryCallbackStore
from app.processing.pipeline import Outcome, Pipeline
from app.processing.streaming import StreamConfig, Streamer
from app.processing.turns import TurnConfig, Turns
from app.storage.inbox import Inbox, InboxItem, NewUpdate
from app.storage.retry_queue import RetryQueue
from app.storage.states import InboxState
from app.telegram_client import TelegramClient
from tests.support.fakes import FakeDelivery, FakeUserService, NoPreviews

JSON = dict[str, Any]
BOT = BotUser(7000001, "turns_bot", "Turns Bot")
TOKEN = "7000001:turns-test-token"


class Clock:
    """`time.time` for the turns, moved by hand."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class PipelineEnv:
    def __init__(
        self,
        engine: Any,
        *,
        turns: TurnConfig | None = None,
        group_reply: str = "addressed",
        triggers: list[str] | None = None,
        feedback: str = "mark",
        agent: Callable[[JSON], JSON] | None = None,
    ) -> None:
        self.users = FakeUserService()
        self.delivery = FakeDelivery()
        self.inbox = Inbox(engine, owner="t", lease_seconds=30)
        self.queue = RetryQueue(engine, self.users)
        self.history = History(self.users, self.queue)
        self.telegram_calls: list[tuple[str, JSON]] = []
        self.agent_requests: list[JSON] = []
        #: When set, the agent waits for it before answering (and `agent_called` is set).
        self.agent_gate: asyncio.Event | None = None
        self.agent_called = asyncio.Event()
        self._agent = agent or (lambda body: {"reply": "re: " + _texts(body)})
        self.tg_http = httpx.AsyncClient(transport=httpx.MockTransport(self._telegram))
        self.agent_http = httpx.AsyncClient(transport=httpx.MockTransport(self._answer))
        self.telegram = TelegramClient(self.tg_http, TOKEN, base="http://tg.invalid")
        self.identity = BotIdentity(self.telegram)
        self.identity.set(BOT)
        self.clock = Clock()
        self.cancellations = Cancellations()
        self.files = FileLinks(bot_token=TOKEN, base_url="http://gw.test")
        self.turns = Turns(
            self.inbox,
            self.history,
            files=self.files,
            cancellations=self.cancellations,
            config=turns or TurnConfig(),
            clock=self.clock,
        )
        agent_client = AgentClient(self.agent_http, "http://agent.invalid", timeout=30)
        self.pipeline = Pipeline(
            inbox=self.inbox,
            users=self.users,
            agent=agent_client,
            history=self.history,
            delivery=self.delivery,
            callbacks=InMemoryCallbackStore(),
            metrics=Metrics(),
            answer_callback=CallbackAcker(self.telegram, self.inbox).answer_once,
            turns=self.turns,
            groups=GroupAddressing(
                self.identity,
                mode=group_reply,  # type: ignore[arg-type]
                trigger_words=triggers,
            ),
            feedback=ButtonFeedback(self.telegram, feedback),  # type: ignore[arg-type]
            # These tests read whole replies (streaming: tests/e2e/test_streaming.py).
            streamer=Streamer(
                agent_client,
                NoPreviews(),
                self.delivery.typing,
                self.cancellations,
                StreamConfig(mode="off"),
            ),
        )

    async def close(self) -> None:
        await self.tg_http.aclose()
        await self.agent_http.aclose()

    # --- the neighbours ----------------------------------------------------------------------

    def _telegram(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        params = json.loads(request.content) if request.content else {}
        self.telegram_calls.append((method, params))
        if method == "getMe":
            result: Any = {"id": BOT.id, "is_bot": True, "first_name": BOT.first_name}
            return httpx.Response(200, json={"ok": True, "result": result})
        return httpx.Response(200, json={"ok": True, "result": True})

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.agent_requests.append(body)
        self.agent_called.set()
        if self.agent_gate is not None:
            await self.agent_gate.wait()
        return httpx.Response(200, json=self._agent(body))

    def calls(self, method: str) -> list[JSON]:
        return [params for m, params in self.telegram_calls if m == method]

    # --- driving -----------------------------------------------------------------------------

    async def add(self, *updates: JSON) -> list[NewUpdate]:
        rows = []
        for update in updates:
            row = classify_update(update)
            assert row is not None, update
            rows.append(NewUpdate(row.update_id, row.chat_key, row.kind, json.dumps(update)))
        await self.inbox.add_many(rows)
        return rows

    async def claim_head(self, chat_key: str | None = None) -> InboxItem | None:
        items = await self.inbox.claim(100)
        mine = [i for i in items if chat_key is None or i.chat_key == chat_key]
        await self.inbox.release([i.seq for i in items if i not in mine[:1]])
        return mine[0] if mine else None

    async def step(self, chat_key: str | None = None) -> tuple[Outcome, InboxItem] | None:
        """Claim a head and process it as the dispatcher would (a wait: give it back)."""
        item = await self.claim_head(chat_key)
        if item is None:
            return None
        outcome = await self.pipeline.process(item)
        if outcome.defer_until is not None:
            await self.inbox.release([item.seq])  # the clock, not the inbox, decides here
        else:
            await self.inbox.finish(item.seq, outcome.state, outcome.note)
        return outcome, item

    async def drain(self, chat_key: str | None = None, *, max_steps: int = 50) -> list[Outcome]:
        """Process until nothing is left; waits are skipped by moving the clock."""
        outcomes: list[Outcome] = []
        for _ in range(max_steps):
            done = await self.step(chat_key)
            if done is None:
                return outcomes
            outcome, _ = done
            outcomes.append(outcome)
            if outcome.defer_until is not None:
                self.clock.advance(outcome.defer_until - self.clock() + 0.01)
        raise AssertionError("the chat did not settle")

    async def states(self) -> dict[int, InboxState]:
        rows = await self.inbox.list_by_state(InboxState.PENDING, 1000)
        pending = {int(r["update_id"]): InboxState.PENDING for r in rows}
        done = await self.inbox.list_by_state(InboxState.DONE, 1000)
        return pending | {int(r["update_id"]): InboxState.DONE for r in done}

    def inbound(self) -> list[str]:
        return [r["message_text"] for r in self.users.rows if r["direction"] == "in"]


def _texts(body: JSON) -> str:
    parts = body.get("parts")
    if isinstance(parts, list) and parts:
        return " | ".join(str(p.get("text")) for p in parts)
    return str(body.get("text"))


# --- updates -------------------------------------------------------------------------------

_user: JSON = {"id": 42, "is_bot": False, "first_name": "An"}


def sender(user_id: int = 42, name: str = "An") -> JSON:
    return {"id": user_id, "is_bot": False, "first_name": name}


def private_chat(user_id: int = 42) -> JSON:
    return {"id": user_id, "type": "private", "first_name": "An"}


def group_chat(chat_id: int = -100500) -> JSON:
    return {"id": chat_id, "type": "supergroup", "title": "Team"}


def message(
    update_id: int,
    text: str | None,
    *,
    message_id: int | None = None,
    user: JSON | None = None,
    chat: JSON | None = None,
    kind: str = "message",
    **fields: Any,
) -> JSON:
    who = user or _user
    msg: JSON = {
        "message_id": update_id if message_id is None else message_id,
        "from": who,
        "chat": chat or private_chat(who["id"]),
        "date": 1700000000,
    }
    if text is not None:
        msg["text"] = text
    msg.update(fields)
    return {"update_id": update_id, kind: msg}


def photo(update_id: int, *, message_id: int, caption: str | None = None, **fields: Any) -> JSON:
    sizes = [
        {"file_id": f"thumb{update_id}", "file_unique_id": f"t{update_id}", "width": 90,
         "height": 90, "file_size": 900},
        {"file_id": f"AgAC{update_id}", "file_unique_id": f"u{update_id}", "width": 1280,
         "height": 960, "file_size": 120_000},
    ]  # fmt: skip
    extra: JSON = {"photo": sizes, **fields}
    if caption is not None:
        extra["caption"] = caption
    return message(update_id, None, message_id=message_id, **extra)


def press(update_id: int, data: str, *, markup: JSON | None, message_id: int = 900) -> JSON:
    msg: JSON = {
        "message_id": message_id,
        "from": {"id": BOT.id, "is_bot": True, "first_name": BOT.first_name},
        "chat": private_chat(),
        "date": 1700000000,
        "text": "Approve?",
    }
    if markup is not None:
        msg["reply_markup"] = markup
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cq{update_id}",
            "from": _user,
            "chat_instance": "ci",
            "data": data,
            "message": msg,
        },
    }
