"""The sandbox's webhook worker outlives surprises: it is the only way from the queue to the
bot, and a worker that died quietly once made every later webhook test of a run wait in vain.
In-process, with respx as the receiver (this is a unit test of one module)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from sandbox import webhook
from sandbox.config import SandboxConfig
from sandbox.state import Sandbox
from sandbox.webhook import run_webhook_worker

HOOK = "http://hook.test/telegram"


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _sandbox(tmp_path: Path) -> Sandbox:
    sandbox = Sandbox(SandboxConfig(webhook_retry_delays=[0.01], state_dir=tmp_path / "state"))
    sandbox.webhook.url = HOOK
    return sandbox


def _update(n: int) -> dict[str, Any]:
    return {"update_id": n, "message": {"message_id": n, "date": 0, "chat": {"id": 1}}}


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()  # the app's shutdown does stop it


@respx.mock(assert_all_called=True)
async def test_a_surprise_in_an_attempt_is_that_attempts_error(
    tmp_path: Path, respx_mock: respx.MockRouter
) -> None:
    sandbox = _sandbox(tmp_path)
    respx_mock.post(HOOK).mock(side_effect=[RuntimeError("boom"), httpx.Response(200)])
    sandbox.enqueue(_update(1), raw=True)
    task = asyncio.create_task(run_webhook_worker(sandbox))
    await _until(lambda: not sandbox.pending, "the update to be delivered")
    assert [(d["attempt"], d["status"], d.get("error")) for d in sandbox.deliveries] == [
        (1, None, "Delivery error: RuntimeError"),
        (2, 200, None),
    ]
    assert sandbox.webhook.last_error_message == "Delivery error: RuntimeError"
    assert sandbox.webhook_worker_restarts == 0
    await _stop(task)


@respx.mock(assert_all_called=True)
async def test_a_stray_cancellation_restarts_the_worker(
    tmp_path: Path, respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = _sandbox(tmp_path)
    respx_mock.post(HOOK).mock(return_value=httpx.Response(200))
    real_post = webhook._post
    surprises = [asyncio.CancelledError(), ValueError("not a cancellation either")]

    async def post(*args: Any) -> str | None:
        if surprises:
            raise surprises.pop(0)  # what a library leaking its cancel scope looks like
        return await real_post(*args)

    monkeypatch.setattr(webhook, "_post", post)
    sandbox.enqueue(_update(1), raw=True)
    sandbox.enqueue(_update(2), raw=True)
    task = asyncio.create_task(run_webhook_worker(sandbox))
    await _until(lambda: not sandbox.pending, "both updates to be delivered")
    assert sandbox.webhook_worker_restarts == 2
    assert [d["update_id"] for d in sandbox.deliveries] == [1, 2]
    await _stop(task)


@respx.mock(assert_all_called=True)
async def test_an_idle_worker_finds_work_without_a_wake_up(
    tmp_path: Path, respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook, "IDLE_RECHECK", 0.05)
    sandbox = _sandbox(tmp_path)
    respx_mock.post(HOOK).mock(return_value=httpx.Response(200))
    task = asyncio.create_task(run_webhook_worker(sandbox))
    await asyncio.sleep(0)  # the worker is waiting on an empty queue
    sandbox.pending.append(_update(1))  # queued behind its back: no wake()
    await _until(lambda: not sandbox.pending, "the update to be found and delivered")
    assert [d["status"] for d in sandbox.deliveries] == [200]
    await _stop(task)
