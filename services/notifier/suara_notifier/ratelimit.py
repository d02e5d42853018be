"""A pacing limiter: calls start no faster than a given rate, so a platform's throughput cap is never hit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Spaces the starts of calls at least `1/rate` seconds apart, in the order they asked (no bursts).

    One limiter per sender (a WhatsApp business number): Meta's throughput limit counts per number. Several
    notifier processes send for the same number, so each paces at its `share` of the rate: the part of the
    outbound partitions it holds (`ConsumerLoop.share`), which together make the whole."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.share: Callable[[], float] = lambda: 1.0
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")

    @property
    def interval(self) -> float:
        """Seconds between two starts: this process's share of the rate."""
        return 1.0 / (self.rate * min(1.0, max(self.share(), 1e-3)))

    async def acquire(self) -> None:
        """Wait for this call's slot. Slots are reserved before waiting, so concurrent callers queue fairly."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)
