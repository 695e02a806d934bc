"""Keep web pages from driving the sandbox: a Host and Origin check on every request.

The sandbox accepts a public, well-known dev token and has an unauthenticated control API, so
its only defence is that it answers loopback clients: non-browser clients (the gateway, tests,
httpx, curl) send no ``Origin``; the chat page is same-origin. A page on another site can still
make the browser send requests (a form POST, an ``<img>`` GET, a WebSocket), and a DNS-rebinding
page can even talk to it under its own name. So:

* ``Host`` must name a loopback host (or one listed in ``SANDBOX_ALLOWED_HOSTS``): defeats
  DNS rebinding, where the attacker's name resolves to 127.0.0.1.
* an ``Origin``, when present, must be same-origin, a loopback origin, or listed in
  ``SANDBOX_ALLOWED_ORIGINS``; ``Origin: null`` (sandboxed frames, file pages) is refused.
* without ``Origin``, a browser request marked ``Sec-Fetch-Site: cross-site`` (``<img>``,
  ``<script>``, links) is refused except for the page itself, so a link to the chat page still
  works but a link to ``/bot<token>/sendMessage?...`` does not.

A refused HTTP request gets 403; a refused WebSocket handshake is closed before it is accepted,
which uvicorn answers with 403 as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Paths a cross-site navigation may open: the chat page and its assets, nothing that acts.
PAGE_PATHS = ("/static/", "/sandbox/docs", "/openapi.json")


def _hostname(host: str) -> str:
    """``"127.0.0.1:8081"`` -> ``"127.0.0.1"``, ``"[::1]:80"`` -> ``"::1"`` (lower case)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class OriginGuard:
    """ASGI middleware; see the module docstring for the rules."""

    def __init__(
        self, app: ASGIApp, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.hosts = LOOPBACK_HOSTS | {_hostname(h) for h in allowed_hosts}
        self.origins = {o.strip().rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        reason = self.refusal(scope)
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
        else:
            await _forbidden(scope, send, reason)

    def refusal(self, scope: Scope) -> str | None:
        """Why this request is refused, or None to let it through."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if host and "*" not in self.hosts and _hostname(host) not in self.hosts:
            return "Host not allowed"
        origin = headers.get("origin")
        if origin is not None:
            return None if self.origin_allowed(origin, host) else "Origin not allowed"
        path: str = scope.get("path", "")
        if headers.get("sec-fetch-site") == "cross-site" and not self._page(path):
            return "cross-site request"
        return None

    def origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if "*" in self.origins or origin in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null", file:, chrome-extension:, ...
        if parts.netloc == host.strip().lower():
            return True  # same origin
        return (parts.hostname or "") in LOOPBACK_HOSTS

    @staticmethod
    def _page(path: str) -> bool:
        return path in ("/", "/health") or path.startswith(PAGE_PATHS)


async def _forbidden(scope: Scope, send: Send, reason: str) -> None:
    path: str = scope.get("path", "")
    payload: dict[str, object]
    if path.startswith(("/bot", "/file/")):
        payload = {"ok": False, "error_code": 403, "description": f"Forbidden: {reason}"}
    else:
        payload = {"detail": f"Forbidden: {reason}"}
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
