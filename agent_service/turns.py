"""One turn being answered: the backend runs in its own task, the HTTP layer reads its events.

Why a task and a queue rather than iterating the backend in the request handler: the handler
must be able to stop the work from outside at any moment (the client closed the connection:
that is how the gateway cancels a turn), and a deadline must cover the whole upstream call
without being tied to the task that happens to be sending the response. Cancelling the task
unwinds the backend's `async with` blocks, which closes the upstream HTTP connection, so the
model server stops generating too.

The deadline: a JSON answer must be complete within `timeout`; a streamed one must make
progress, its first event and each next one arriving within `timeout` of the previous.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from agent_service.backends.base import (
    AgentError,
    Backend,
    Delta,
    Event,
    Final,
    Progress,
    UpstreamTimeout,
)
from agent_service.schemas import RespondIn

log = logging.getLogger("agent_service.turns")


@dataclass(frozen=True)
class Failure:
    error: AgentError


Item = Delta | Final | Failure


class Turn:
    def __init__(
        self,
        backend: Backend,
        request: RespondIn,
        *,
        stream: bool,
        timeout: float,
        registry: set[asyncio.Task[None]],
    ) -> None:
        self.stream = stream
        self.timeout = timeout
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=64)
        self.task = asyncio.create_task(self._run(backend.answer(request, stream=stream)))
        # The loop keeps only weak references to tasks: hold this one until it ends, even
        # after the handler that started it is gone (a cancelled turn still cleans up).
        registry.add(self.task)
        self.task.add_done_callback(registry.discard)

    async def _run(self, events: AsyncIterator[Event]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                async for event in events:
                    if self.stream:
                        deadline.reschedule(loop.time() + self.timeout)
                    if isinstance(event, Progress):
                        continue
                    await self.queue.put(event)
                    if isinstance(event, Final):
                        return
            raise AgentError("the backend ended without an answer")
        except TimeoutError:
            what = "make progress" if self.stream else "answer"
            await self.queue.put(
                Failure(UpstreamTimeout(f"the model did not {what} within {self.timeout:g} s"))
            )
        except AgentError as exc:
            await self.queue.put(Failure(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the backend failed")
            await self.queue.put(Failure(AgentError("the agent failed unexpectedly")))
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    async def next(self) -> Item:
        return await self.queue.get()

    async def result(self) -> Final | Failure:
        """The whole answer (deltas are dropped: the `Final` carries all the text)."""
        while True:
            item = await self.next()
            if isinstance(item, Final | Failure):
                return item

    def cancel(self) -> None:
        """Stop the turn now; synchronous, because it runs where awaiting is not possible
        (inside a cancelled response task). The task cleans up on its own."""
        self.task.cancel()

    async def events(self, first: Item) -> AsyncIterator[Item]:
        """`first`, then every later item until the `Final` or a `Failure`; cancels on exit."""
        try:
            item = first
            while True:
                yield item
                if not isinstance(item, Delta):
                    return
                item = await self.next()
        finally:
            self.cancel()
