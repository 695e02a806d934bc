"""The ceiling to compare against: a bare FastAPI endpoint that only parses the JSON body."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/webhook/telegram")
async def webhook(request: Request) -> dict[str, bool]:
    await request.json()
    return {"ok": True}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
