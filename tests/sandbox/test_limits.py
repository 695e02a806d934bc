"""Flood limits: bursts beyond the bucket get 429 with retry_after; exact pacing never does."""

from __future__ import annotations

import random
import time

from sandbox.client import SandboxControl
from sandbox.config import LimitSettings
from sandbox.limits import FloodControl
from tests.sandbox.conftest import Bot


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_default_limits_per_chat_burst_then_refusal() -> None:
    clock = FakeClock()
    flood = FloodControl(LimitSettings(), clock)
    assert [flood.acquire(42) for _ in range(3)] == [0.0, 0.0, 0.0]  # burst of 3
    wait = flood.acquire(42)
    assert 0.9 < wait <= 1.0
    assert flood.acquire(43) == 0.0  # another chat has its own bucket
    clock.now += 1.0
    assert flood.acquire(42) == 0.0


def test_exact_pacing_with_jitter_is_never_refused() -> None:
    clock = FakeClock()
    flood = FloodControl(LimitSettings(per_chat_burst=1), clock)
    rng = random.Random(7)
    for i in range(500):
        # scheduled exactly 1/s; timers fire up to 45 ms late (never early)
        clock.now = 1000.0 + i + rng.choice([0.0, 0.045, rng.uniform(0, 0.045)])
        assert flood.acquire(42) == 0.0, i


def test_global_and_group_buckets() -> None:
    clock = FakeClock()
    flood = FloodControl(LimitSettings(), clock)
    assert all(flood.acquire(chat) == 0.0 for chat in range(1, 31))  # 30 chats, 30/s
    # the bot-wide bucket is empty (the 50 ms jitter tolerance lends at most one token at 30/s)
    assert flood.acquire(31) == 0.0 and flood.acquire(32) > 0
    clock.now += 60
    group = [flood.acquire(-100) for _ in range(21)]
    assert group[:3] == [0.0] * 3 and group[3] > 0  # per chat first: 1/s burst 3
    clock.now += 60
    group_only = FloodControl(LimitSettings(per_chat_rate=0), clock)
    results = [group_only.acquire(-100) for _ in range(21)]
    assert results[:20] == [0.0] * 20
    assert 2.9 < results[20] <= 3.0  # 20 per minute: one more token every 3 s


def test_burst_over_http_gets_429_with_retry_after(control: SandboxControl, bot: Bot) -> None:
    control.set_limits(per_chat_rate=1, per_chat_burst=3, global_rate=30, global_burst=30)
    uid = control.create_user("Ann")["id"]
    answers = [bot.call("sendMessage", chat_id=uid, text=f"m{i}") for i in range(5)]
    assert [a["ok"] for a in answers] == [True, True, True, False, False]
    refused = answers[3]
    assert refused["error_code"] == 429
    assert refused["parameters"]["retry_after"] == 1
    assert refused["description"] == "Too Many Requests: retry after 1"
    # typing and callback answers are not counted
    assert bot.call("sendChatAction", chat_id=uid, action="typing")["ok"]
    assert control.stats()["flood_429"] == 2
    assert len(control.calls("sendMessage", status=429)) == 2
    assert len(control.bot_messages(uid)) == 3


def test_group_limit_per_minute(control: SandboxControl, bot: Bot) -> None:
    control.set_limits(
        group_rate_per_minute=20, group_burst=2, per_chat_rate=100, per_chat_burst=100
    )
    uid = control.create_user("Ann")["id"]
    gid = control.create_group("Team", [uid])["id"]
    assert gid < 0
    assert bot.call("sendMessage", chat_id=gid, text="1")["ok"]
    assert bot.call("sendMessage", chat_id=gid, text="2")["ok"]
    refused = bot.call("sendMessage", chat_id=gid, text="3")
    assert refused["error_code"] == 429 and refused["parameters"]["retry_after"] == 3


def test_client_pacing_exactly_at_the_limit_over_http(control: SandboxControl, bot: Bot) -> None:
    rate = 10.0  # 10/s, burst 1: each message must wait exactly 100 ms
    control.set_limits(per_chat_rate=rate, per_chat_burst=1, global_rate=1000, global_burst=1000)
    uid = control.create_user("Ann")["id"]
    start = time.monotonic()
    for i in range(15):
        # pace by the schedule (not by sleeping after each call), as a careful client would
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = bot.call("sendMessage", chat_id=uid, text=f"m{i}")
        assert body["ok"], (i, body)
    assert control.stats()["flood_429"] == 0
