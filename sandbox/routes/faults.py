"""Fault injection and flood-limit settings."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from sandbox.config import LimitSettings
from sandbox.routes.models import FaultIn
from sandbox.state import Fault, Sandbox


def build_router(sandbox: Sandbox) -> APIRouter:
    r = APIRouter()
    ids = itertools.count(1)

    @r.post("/faults")
    async def add_fault(body: FaultIn) -> dict[str, Any]:
        resp_body = body.body
        if resp_body is None and body.description is not None:
            resp_body = {"ok": False, "error_code": body.status, "description": body.description}
        fault = Fault(
            id=next(ids),
            method=body.method.lower(),
            kind=body.kind,
            remaining=body.count,
            status=body.status,
            body=resp_body,
            retry_after=body.retry_after,
            latency=body.latency,
            hang_seconds=body.hang_seconds,
        )
        sandbox.faults.append(fault)
        return fault.to_json()

    @r.get("/faults")
    async def list_faults() -> list[dict[str, Any]]:
        return [f.to_json() for f in sandbox.faults]

    @r.delete("/faults")
    async def clear_faults() -> dict[str, bool]:
        sandbox.faults.clear()
        return {"ok": True}

    @r.get("/limits")
    async def get_limits() -> dict[str, Any]:
        return sandbox.flood.settings.model_dump()

    @r.put("/limits")
    async def set_limits(request: Request) -> dict[str, Any]:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise HTTPException(422, "give a JSON object of limit settings")
        try:
            merged = LimitSettings(**{**sandbox.flood.settings.model_dump(), **changes})
        except Exception as exc:
            raise HTTPException(422, str(exc)) from None
        sandbox.flood.configure(merged)
        return merged.model_dump()

    return r
