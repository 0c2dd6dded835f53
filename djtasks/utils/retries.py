"""Retry delays: exponential backoff with full jitter, capped (pure layer)."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(factor: float, retries: int, maximum: float | None, jitter: bool,
                  randint: Callable[[int, int], int] = random.randint) -> int:
    """Return the countdown of retry number ``retries + 1``, in whole seconds.

    The delay doubles with each retry (``factor * 2 ** retries``) up to ``maximum``; with
    ``jitter`` it is drawn uniformly between 0 and that ("full jitter"), so that many tasks
    failing together do not all come back at the same moment. ``randint`` is passed in so
    tests can pin the draw.
    """
    if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 0:
        raise ValueError(f"retry_backoff: expected True or a number of seconds >= 0, got {factor!r}")
    if retries < 0:
        raise ValueError(f"retries: expected a count >= 0, got {retries!r}")
    # Cap the exponent too: 2 ** 10_000 is a very large int, and no cap needs it.
    delay = factor * 2 ** min(retries, 64)
    if maximum is not None:
        delay = min(delay, maximum)
    delay = int(delay)
    if jitter:
        delay = randint(0, delay)
    return max(0, delay)


def backoff_factor(retry_backoff: bool | float) -> float:
    """Return the factor ``retry_backoff`` stands for: True is 1 second, a number itself."""
    if retry_backoff is True:
        return 1
    return retry_backoff


class Backoff:
    """Delays for a loop that retries while something it needs is down.

    Each failure doubles the delay from ``first`` up to ``maximum``; the delay drawn is
    between half of that and all of it ("equal jitter"), so that processes that failed
    together come back spread out, yet never faster than half the schedule. ``reset``
    after a success starts again from ``first``.
    """

    def __init__(self, first: float = 0.1, maximum: float = 5.0,
                 rand: Callable[[], float] = random.random) -> None:
        if first <= 0 or maximum < first:
            raise ValueError(f"Backoff: expected 0 < first <= maximum, got {first!r}, {maximum!r}")
        self.first = first
        self.maximum = maximum
        self.rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure; return the seconds to wait before the next try."""
        ceiling = min(self.maximum, self.first * 2 ** min(self.failures, 64))
        self.failures += 1
        return ceiling / 2 + self.rand() * ceiling / 2

    def reset(self) -> None:
        self.failures = 0
