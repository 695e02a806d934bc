"""The control API under ``/sandbox``: drive simulated users, inspect transcripts and recorded
calls, inject faults, change limits. JSON in, JSON out; documented in docs/sandbox.md.

Each area is a module of ``sandbox.routes``; this one only mounts them.
"""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.actors import command_entities, text_entities
from sandbox.routes import business, calls, chats, faults, inspect, users
from sandbox.state import Sandbox

__all__ = ["build_router", "command_entities", "text_entities"]


def build_router(sandbox: Sandbox) -> APIRouter:
    router = APIRouter(prefix="/sandbox")
    for area in (inspect, calls, users, chats, business, faults):
        router.include_router(area.build_router(sandbox))
    return router
