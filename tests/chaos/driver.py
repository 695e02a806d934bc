"""Telegram's side of the chaos run: the updates to send and how they are delivered.

Delivery copies what Telegram does with a webhook: per chat, the next update is sent only after
the previous one was answered 200; chats proceed in parallel; anything not answered 200
(connection refused, 503, timeout) is delivered again after a short back-off, here to a random
live replica (Telegram has one URL; a load balancer in front of the replicas picks one). An
update counts as acknowledged when it got its 200: from then on the gateway owns it.

Every update's text carries a unique marker such as ``c17-m5`` (chat 17, its fifth message) so
the analysis can tell, from the stand-ins' records alone, which message each reply and each
history row belongs to.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

UPDATE_ID_BASE = 900_000_000
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass(frozen=True)
class PlannedUpdate:
    update_id: int
    chat_id: int
    marker: str
    kind: str  # "message" | "callback_query"
    body: bytes


@dataclass
class ChatPlan:
    index: int
    chat_id: int
    group: bool
    updates: list[PlannedUpdate] = field(default_factory=list)


@dataclass
class Ack:
    marker: str
    update_id: int
    chat_id: int
    attempts: int
    first_try_mono: float
    ack_mono: float
    target: str  # which replica answered 200


@dataclass
class DriveResult:
    acks: dict[str, Ack] = field(default_factory=dict)  # marker -> ack
    unacknowledged: list[str] = field(default_factory=list)
    deliveries: int = 0  # POSTs made, redeliveries included
    failures: dict[str, int] = field(default_factory=dict)  # why a POST was not a 200
    started: float = 0.0
    finished: float = 0.0


def plan_updates(
    *, updates: int, chats: int, groups: int, callbacks: int, rng: random.Random
) -> list[ChatPlan]:
    """`updates` spread round-robin over `chats`; the first `groups` are group chats (negative
    ids, two members writing in turn); `callbacks` later messages of private chats are button
    presses instead. Update ids rise in the order the updates are meant to go out."""
    plans: list[ChatPlan] = []
    for i in range(chats):
        group = i < groups
        chat_id = -(1_001_000_000_000 + i) if group else 500_000 + i
        plans.append(ChatPlan(i, chat_id, group))
    per_chat = [updates // chats + (1 if i < updates % chats else 0) for i in range(chats)]
    private = [p for p in plans if not p.group and per_chat[p.index] >= 2]
    presses: set[tuple[int, int]] = set()
    for plan in rng.sample(private, min(callbacks, len(private))):
        presses.add((plan.index, rng.randrange(2, per_chat[plan.index] + 1)))
    update_id = UPDATE_ID_BASE
    for m in range(1, max(per_chat, default=0) + 1):
        for plan in plans:
            if m > per_chat[plan.index]:
                continue
            update_id += 1
            marker = f"c{plan.index}-m{m}"
            kind = "callback_query" if (plan.index, m) in presses else "message"
            body = _update_body(plan, m, update_id, marker, kind)
            plan.updates.append(PlannedUpdate(update_id, plan.chat_id, marker, kind, body))
    return plans


def _sender(plan: ChatPlan, m: int) -> dict[str, Any]:
    user_id = 600_000 + plan.index * 10 + (m % 2) if plan.group else plan.chat_id
    return {"id": user_id, "is_bot": False, "first_name": f"U{user_id}", "language_code": "en"}


def _update_body(plan: ChatPlan, m: int, update_id: int, marker: str, kind: str) -> bytes:
    sender = _sender(plan, m)
    if plan.group:
        chat: dict[str, Any] = {"id": plan.chat_id, "type": "supergroup", "title": f"G{plan.index}"}
    else:
        chat = {"id": plan.chat_id, "type": "private", "first_name": sender["first_name"]}
    now = int(time.time())
    update: dict[str, Any]
    if kind == "callback_query":
        update = {
            "update_id": update_id,
            "callback_query": {
                "id": f"cq{update_id}",
                "from": sender,
                "chat_instance": f"ci{plan.index}",
                "data": f"press {marker}",
                "message": {
                    "message_id": 1_000_001,  # the bot's first message in this chat
                    "from": {"id": 7000001, "is_bot": True, "first_name": "Chaos"},
                    "chat": chat,
                    "date": now,
                    "text": "pick one",
                },
            },
        }
    else:
        update = {
            "update_id": update_id,
            "message": {
                "message_id": m,
                "from": sender,
                "chat": chat,
                "date": now,
                "text": f"hello {marker}",
            },
        }
    return json.dumps(update).encode()


class Pacer:
    """A steady overall rate of new updates: one slot every 1/rate seconds, first come first
    served (redeliveries do not take slots: Telegram retries on its own clock)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def slot(self) -> None:
        async with self.lock:
            now = time.monotonic()
            at = max(self.next, now)
            self.next = at + self.interval
        await asyncio.sleep(at - now)


async def drive(
    plans: Sequence[ChatPlan],
    *,
    targets: Callable[[], list[str]],
    secret: str,
    rate: float,
    deadline: float,
    rng: random.Random,
    post_timeout: float = 3.0,
) -> DriveResult:
    """Deliver every planned update; `targets()` lists the webhook URLs of the live replicas.

    Returns when every update is acknowledged or at the monotonic `deadline` (then the rest are
    listed as unacknowledged)."""
    result = DriveResult(started=time.monotonic())
    pacer = Pacer(rate)
    headers = {SECRET_HEADER: secret, "content-type": "application/json"}
    # Idle connections are dropped before uvicorn's 5 s keep-alive could close one under a POST.
    limits = httpx.Limits(
        max_connections=len(plans) + 8, max_keepalive_connections=len(plans), keepalive_expiry=2
    )

    async with httpx.AsyncClient(limits=limits, timeout=post_timeout) as http:

        async def deliver(update: PlannedUpdate) -> None:
            await pacer.slot()
            first = time.monotonic()
            attempts = 0
            while time.monotonic() < deadline:
                live = targets()
                if live:
                    target = rng.choice(live)
                    attempts += 1
                    result.deliveries += 1
                    reason = await _post(http, target, update.body, headers)
                    if reason is None:
                        result.acks[update.marker] = Ack(
                            update.marker,
                            update.update_id,
                            update.chat_id,
                            attempts,
                            first,
                            time.monotonic(),
                            target,
                        )
                        return
                    result.failures[reason] = result.failures.get(reason, 0) + 1
                backoff = min(0.1 * 2 ** min(attempts, 4), 1.0)
                await asyncio.sleep(backoff * rng.uniform(0.5, 1.0))
            result.unacknowledged.append(update.marker)

        async def chat(plan: ChatPlan) -> None:
            for update in plan.updates:
                await deliver(update)
                if update.marker not in result.acks:
                    # Past the deadline: the rest of this chat is not sent at all.
                    rest = plan.updates[plan.updates.index(update) + 1 :]
                    result.unacknowledged.extend(u.marker for u in rest)
                    return

        await asyncio.gather(*(chat(p) for p in plans))
    result.finished = time.monotonic()
    return result


async def _post(
    http: httpx.AsyncClient, target: str, body: bytes, headers: dict[str, str]
) -> str | None:
    """None on a 200, else why not (``HTTP 503``, ``ConnectError``, ...)."""
    try:
        response = await http.post(target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return exc.__class__.__name__
    if response.status_code == 200:
        return None
    return f"HTTP {response.status_code}"
