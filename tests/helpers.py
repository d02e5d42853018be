"""Helpers of the cross-service tests: waiting for an outcome a user would see, within a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0,
                     what: str = "the expected outcome") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` if it never does."""
    deadline = asyncio.get_running_loop().time() + within
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {what} within {within:.0f}s (last: {last!r})")
