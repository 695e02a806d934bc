"""`X-Admin-Token`, the one guard in front of every `/admin/*` route.

Without `ADMIN_TOKEN` configured the admin API is disabled (403), so a deployment that forgot
to set one is closed rather than open. A missing header is 401, a wrong one 403; the compare is
constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Header, HTTPException

AdminGuard = Callable[..., None]


def make_admin_guard(admin_token: str | None) -> AdminGuard:
    expected = admin_token.encode() if admin_token else None

    def require_admin(x_admin_token: str | None = Header(default=None)) -> None:
        if expected is None:
            raise HTTPException(403, "admin API disabled: set ADMIN_TOKEN to enable it")
        if not x_admin_token:
            raise HTTPException(401, "missing X-Admin-Token header")
        if not hmac.compare_digest(x_admin_token.encode(), expected):
            raise HTTPException(403, "invalid admin token")

    return require_admin
