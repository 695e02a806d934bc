"""The `local` backend: the `openai` backend pointed at a llama.cpp server we start ourselves.

The server (see `agent_service.local`) is a child of this process, started in the app's
lifespan and stopped with it; the model alias and base URL are ours, so `OPENAI_*` and
`AGENT_MODEL` are ignored here. Everything else (prompt, history budget, tools, timeout)
is the `openai` backend's, so the local model is exercised through the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

from agent_service.backends.base import Event
from agent_service.backends.openai_compat import OpenAIBackend, UpstreamConfig
from agent_service.config import Settings
from agent_service.local import MODEL_ALIAS, LlamaServer
from agent_service.schemas import RespondIn


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings, config: UpstreamConfig) -> None:
        self.settings = settings
        self.config = config
        self.server: LlamaServer | None = None
        self.inner: OpenAIBackend | None = None

    async def start(self) -> None:
        s = self.settings
        server = LlamaServer(
            s.AGENT_LOCAL_MODEL_PATH,
            port=s.AGENT_LOCAL_PORT,
            threads=s.AGENT_LOCAL_THREADS,
            context=s.AGENT_LOCAL_CONTEXT,
        )
        server.start()  # in the event loop's thread: the child's lifetime is tied to it
        try:
            await server.wait_ready_async(s.AGENT_LOCAL_START_TIMEOUT)
        except BaseException:
            server.stop()
            raise
        self.server = server
        self.inner = OpenAIBackend(
            replace(self.config, base_url=server.base_url, api_key=None, model=MODEL_ALIAS)
        )
        await self.inner.start()

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)

    def answer(self, request: RespondIn, *, stream: bool) -> AsyncIterator[Event]:
        if self.inner is None:
            raise RuntimeError("LocalBackend.start() was not awaited")
        return self.inner.answer(request, stream=stream)
