"""Time limits of running jobs: when each is due, and what fired (processes layer).

A job says its limits through two attributes, ``soft_time_limit`` and ``time_limit``
(seconds, None for none); a job without them has none. The pool starts the clock when it
hands the job to a member and asks ``Deadlines.due(now)`` which limits have passed. The
clock is passed in, so the bookkeeping is pure and testable without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class TimeLimits:
    """The soft and hard limits of one job, in seconds (None: no such limit)."""

    soft: float | None = None
    hard: float | None = None

    @classmethod
    def of(cls, job: Any) -> TimeLimits:
        """Read the limits a job carries; a job that has none gets none."""
        return cls.checked(getattr(job, "soft_time_limit", None), getattr(job, "time_limit", None))

    @classmethod
    def checked(cls, soft: Any, hard: Any) -> TimeLimits:
        """Build limits from raw values; anything but a positive number means none."""
        return cls(_positive(soft), _positive(hard))

    def __bool__(self) -> bool:
        return self.soft is not None or self.hard is not None


@dataclass(frozen=True)
class Timeout:
    """A limit that a job ran past: ``soft`` or hard, and the limit in seconds.

    This is what a job's Outcome carries, the place where a ``Request.on_timeout(soft,
    timeout)`` hook learns of it.
    """

    soft: bool
    limit: float

    def describe(self) -> str:
        return f"{'soft' if self.soft else 'hard'} time limit ({self.limit:g}s) exceeded"


@dataclass
class _Clock:
    started: float
    limits: TimeLimits
    soft_fired: bool = False
    hard_fired: bool = False

    def next_at(self) -> float:
        times = []
        if self.limits.soft is not None and not (self.soft_fired or self.hard_fired):
            times.append(self.started + self.limits.soft)
        if self.limits.hard is not None and not self.hard_fired:
            times.append(self.started + self.limits.hard)
        return min(times, default=math.inf)


#: What a pool keys its running jobs by (a Ticket, a Child).
Key = TypeVar("Key", bound=Hashable)


class Deadlines(Generic[Key]):
    """Start times and limits of running jobs, keyed by whatever the pool runs them in.

    Not thread-safe: the pool calls it under its own lock. Each limit of a job fires once.
    """

    def __init__(self) -> None:
        self._clocks: dict[Key, _Clock] = {}

    def start(self, key: Key, limits: TimeLimits, now: float) -> None:
        """Start the clock of the job running in ``key`` (no limits: nothing to watch)."""
        if limits:
            self._clocks[key] = _Clock(now, limits)
        else:
            self._clocks.pop(key, None)

    def finish(self, key: Key, hard_enforced: bool = True) -> Timeout | None:
        """Stop watching ``key``; return the limit that fired for it (hard over soft), if any.

        A pool that cannot enforce a hard limit (``hard_enforced`` false) reports only the
        soft one: the job ran to its end all the same.
        """
        clock = self._clocks.pop(key, None)
        if clock is None:
            return None
        if hard_enforced and clock.hard_fired and clock.limits.hard is not None:
            return Timeout(soft=False, limit=clock.limits.hard)
        if clock.soft_fired and clock.limits.soft is not None:
            return Timeout(soft=True, limit=clock.limits.soft)
        return None

    def due(self, now: float) -> list[tuple[Key, Timeout]]:
        """Return the limits that passed by ``now``, hard before soft, and mark them fired.

        A hard limit that passes with the soft one still pending fires alone: the job is
        about to be killed, warning it first would only race the kill.
        """
        fired: list[tuple[Key, Timeout]] = []
        for key, clock in self._clocks.items():
            limits = clock.limits
            if (limits.hard is not None and not clock.hard_fired
                    and now >= clock.started + limits.hard):
                clock.hard_fired = True
                fired.append((key, Timeout(soft=False, limit=limits.hard)))
            elif (limits.soft is not None and not (clock.soft_fired or clock.hard_fired)
                    and now >= clock.started + limits.soft):
                clock.soft_fired = True
                fired.append((key, Timeout(soft=True, limit=limits.soft)))
        return fired

    def next_at(self) -> float:
        """Return when the next limit passes (``math.inf`` when none is pending)."""
        return min((clock.next_at() for clock in self._clocks.values()), default=math.inf)

    def wait_time(self, now: float, longest: float) -> float:
        """Return how long a watcher may sleep: until the next limit, at most ``longest``."""
        return max(0.0, min(longest, self.next_at() - now))


def _positive(value: Any) -> float | None:
    # Anything but a positive number means "no limit": a message from another client may
    # carry 0 or garbage, and a job must not be killed at once because of it.
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None
    return float(value)
