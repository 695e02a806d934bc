"""Exponential back-off with jitter, one definition for every retry loop in the gateway."""

from __future__ import annotations

import random


def backoff_delay(
    failures: int, base: float, cap: float, jitter: tuple[float, float] = (1.0, 1.0)
) -> float:
    """Seconds to wait after the `failures`-th failure (1 = first): base, 2*base, 4*base, ...

    Capped at `cap`, then multiplied by a random factor in `jitter`, so that chats, rows and
    replicas that failed together do not retry in step.
    """
    delay = min(cap, base * 2 ** min(max(failures, 1) - 1, 30))
    return float(delay * random.uniform(*jitter))
