"""Start real service processes on 127.0.0.1 for integration and end-to-end tests.

Every test that needs "the real thing" (a uvicorn process speaking HTTP) goes through
`ServerProcess` (`app.devstack.Service`, the same class `messaging dev` starts its processes
with), so that ports, readiness polling, log capture and clean shutdown are done one way: poll
with a deadline instead of sleeping, and keep the process output in a file that is printed
when start-up fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.devstack import ROOT, Service, free_port

__all__ = ["ROOT", "ServerProcess", "free_port", "wait_until"]


def wait_until(
    predicate: object,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
    details: Callable[[], object] | None = None,
) -> None:
    """Poll `predicate()` until it is truthy or `timeout` seconds pass (then AssertionError,
    with what `details()` says of the system then: a timeout should say where things stood)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # the condition may raise while the system settles
            last_exc = exc
        time.sleep(interval)
    message = f"timed out after {timeout}s waiting for {what or predicate}: {last_exc!r}"
    if details is not None:
        try:
            message += f"\n{details()}"
        except Exception as exc:
            message += f"\n(details failed: {exc!r})"
    raise AssertionError(message)


#: A process of the local stack (`app.devstack.Service`): the tests start real services the way
#: `messaging dev` does.
ServerProcess = Service
