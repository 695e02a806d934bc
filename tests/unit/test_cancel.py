"""`app.processing.cancel`: a chat's running work is cancelled on purpose, nothing else is."""

from __future__ import annotations

import asyncio

import pytest

from app.processing.cancel import Cancellations, Cancelled


async def test_cancel_ends_the_scope_with_the_reason() -> None:
    c = Cancellations()
    started = asyncio.Event()

    async def work() -> str:
        with c.scope("42"):
            started.set()
            await asyncio.sleep(30)
        return "finished"

    task = asyncio.create_task(work())
    await started.wait()
    assert c.running("42") and not c.running("43")
    assert c.cancel("42", "stop")
    with pytest.raises(Cancelled) as info:
        await task
    assert info.value.reason == "stop"
    assert not c.running("42") and not c.cancel("42", "stop")


async def test_a_foreign_cancellation_is_not_swallowed() -> None:
    c = Cancellations()
    started = asyncio.Event()

    async def work() -> None:
        with c.scope("42"):
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await started.wait()
    task.cancel()  # e.g. shutdown
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not c.running("42")


async def test_work_after_the_scope_goes_on() -> None:
    c = Cancellations()
    seen: list[str] = []

    async def work() -> None:
        try:
            with c.scope("1"):
                await asyncio.sleep(30)
        except Cancelled:
            seen.append("cancelled")
        await asyncio.sleep(0)  # the task itself is not cancelled any more
        seen.append("went on")

    task = asyncio.create_task(work())
    await asyncio.sleep(0.01)
    c.cancel("1", "interrupt")
    await task
    assert seen == ["cancelled", "went on"]


async def test_nested_scopes_the_inner_one_gets_the_reason() -> None:
    c = Cancellations()
    got: list[str] = []
    started = asyncio.Event()

    async def work() -> None:
        with c.scope("7"):  # the turn
            try:
                with c.scope("7"):  # its agent call
                    started.set()
                    await asyncio.sleep(30)
            except Cancelled as stop:
                got.append(stop.reason)
            assert c.running("7")  # the turn is still cancellable
            started.clear()
            await asyncio.sleep(0)
            got.append("after")

    task = asyncio.create_task(work())
    await started.wait()
    assert c.cancel("7", "interrupt")
    await task
    assert got == ["interrupt", "after"]
    assert not c.running("7")
