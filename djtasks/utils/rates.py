"""Rate limits: parse "10/s", "100/m", "5/h"; a token bucket over an injected clock (pure layer)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Protocol

#: Seconds per unit; Celery reads the unit's first letter, so its longer spellings work too.
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(?P<count>\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(?P<unit>[a-z]+)\s*)?$", re.IGNORECASE)
#: Float slack: the clock read after sleeping wait_time() may fall a hair short.
EPSILON = 1e-9
_SPELLINGS = {"s", "sec", "secs", "second", "seconds", "m", "min", "mins", "minute", "minutes",
              "h", "hr", "hrs", "hour", "hours"}


def parse_rate(value: object) -> float | None:
    """Return ``value`` as tasks per second; None (or 0) means no limit.

    Accepts Celery's forms: ``"10/s"``, ``"100/m"``, ``"5/h"``, and a number (or a string
    holding one) meaning per second. Anything else raises ValueError naming the value.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"rate_limit: expected '<n>/s', '<n>/m', '<n>/h' or a number, got {value!r}")
    if isinstance(value, int | float):
        per_second = float(value)
    elif isinstance(value, str) and (match := _RATE.match(value)):
        unit = (match["unit"] or "s").lower()
        if unit not in _SPELLINGS:
            raise ValueError(f"rate_limit: expected the unit s, m or h, got {value!r}")
        per_second = float(match["count"]) / UNITS[unit[0]]
    else:
        raise ValueError(f"rate_limit: expected '<n>/s', '<n>/m', '<n>/h' or a number, got {value!r}")
    if per_second < 0:
        raise ValueError(f"rate_limit: expected a rate of at least 0, got {value!r}")
    return per_second or None


class Bucket(Protocol):
    """What a rate-limit gate takes tokens from: a TokenBucket, or one shared by processes."""

    rate: float

    def take(self) -> bool: ...

    def wait_time(self) -> float: ...


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up; full at the start.

    With capacity 1 (the worker's choice, as Celery's) tasks start at most once every
    ``1 / rate`` seconds and never in bursts.
    """

    def __init__(self, rate: float, capacity: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"token bucket: expected a positive rate, got {rate!r}")
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self._tokens = capacity
        self._filled_at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now

    def take(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if the bucket holds them (True); otherwise take nothing (False)."""
        self._refill()
        if self._tokens + EPSILON < tokens:  # a sleep of wait_time() must be enough
            return False
        self._tokens -= tokens
        return True

    def wait_time(self, tokens: float = 1.0) -> float:
        """Return the seconds until ``tokens`` can be taken (0 when they can be now)."""
        self._refill()
        return max(0.0, (tokens - self._tokens) / self.rate)
