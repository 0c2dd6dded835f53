"""Rate limits: hold a rate-limited task's messages in the worker until a token comes (processes layer).

Per task and per worker, as in Celery: a token bucket of capacity 1 per limited task, so
its starts are at least ``1 / rate`` seconds apart. A message that finds no token is held
here, reserved and unacknowledged, in arrival order; other tasks' messages pass it by.
Held messages widen the prefetch window by as many (Celery's way too), so that a backlog
of limited messages never fills the window and starves the other tasks. The consumer asks
``wait_time()`` how long it may block on the broker, so it wakes when the next token is
due instead of polling.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from djtasks.registry import TaskRegistry
from djtasks.utils.rates import Bucket, TokenBucket, parse_rate
from djtasks.worker.pools.base import Pool

logger = logging.getLogger("djtasks.worker")

#: Shortest block on the broker while a token is due: never a busy loop.
MIN_WAIT = 0.005

Held = tuple[Any, Any]  # (Request, kombu.Message)


class RateLimits:
    """The rate-limit gate between a worker's reserved messages and its pool."""

    def __init__(self, tasks: TaskRegistry, pool: Pool, on_held: Callable[[int], None],
                 clock: Callable[[], float] = time.monotonic,
                 make_bucket: Callable[[str, float], Bucket] | None = None) -> None:
        self.tasks = tasks
        self.pool = pool
        self.on_held = on_held
        self.clock = clock
        # A bucket of this worker's own, or (a fleet's child) one its siblings take from too.
        self.make_bucket = make_bucket or (lambda name, rate: TokenBucket(rate, clock=clock))
        self._buckets: dict[str, Bucket | None] = {}
        self._held: dict[str, deque[Held]] = {}
        self._passes: set[int] = set()  # id() of released requests: their token is taken

    # -- limits --------------------------------------------------------------------------
    def set_rate(self, name: str, rate: object) -> None:
        """Set task ``name``'s limit on this worker (None or 0: none); ValueError if bad."""
        per_second = parse_rate(rate)
        self._buckets[name] = self.make_bucket(name, per_second) if per_second else None

    def rate_of(self, name: str) -> float | None:
        """Return task ``name``'s limit in tasks per second on this worker (None: none)."""
        bucket = self._bucket(name)
        return bucket.rate if bucket is not None else None

    def _bucket(self, name: str) -> Bucket | None:
        if name not in self._buckets:
            task = self.tasks.get(name)
            try:
                self.set_rate(name, getattr(task, "rate_limit", None))
            except ValueError as exc:  # checked when the task was defined; never fatal here
                logger.error("Task %s: %s; it runs without a rate limit", name, exc)
                self._buckets[name] = None
        return self._buckets[name]

    # -- the gate ------------------------------------------------------------------------
    def hold(self, request: Any, message: Any) -> bool:
        """Take a token for ``request`` and return False (start it), or hold it and return True."""
        if id(request) in self._passes:
            self._passes.discard(id(request))
            return False
        name = request.message.task
        bucket = self._bucket(name)
        if bucket is None:
            return False
        waiting = self._held.get(name)
        if not waiting and bucket.take():
            return False
        self._held.setdefault(name, deque()).append((request, message))
        self.on_held(self.held)
        return True

    def release(self) -> list[Held]:
        """Return held messages whose token has come, at most one per free pool slot."""
        room = self.pool.free_slots()
        released: list[Held] = []
        for name, waiting in list(self._held.items()):
            bucket = self._bucket(name)
            while waiting and len(released) < room and (bucket is None or bucket.take()):
                request, message = waiting.popleft()
                self._passes.add(id(request))
                released.append((request, message))
            if not waiting:
                del self._held[name]
        if released:
            self.on_held(self.held)
        return released

    def wait_time(self, longest: float) -> float:
        """Return how long the consumer may block: ``longest``, or less when a token is due."""
        if not self._held or self.pool.free_slots() == 0:
            return longest  # a finishing task wakes the consumer anyway
        due = min((bucket.wait_time() if (bucket := self._bucket(name)) else 0.0)
                  for name in self._held)
        return max(MIN_WAIT, min(longest, due))

    @property
    def held(self) -> int:
        """How many messages are held."""
        return sum(len(waiting) for waiting in self._held.values())

    def waiting(self) -> list[Held]:
        """Return the held messages, without releasing them (inspect ``reserved``)."""
        return [item for waiting in self._held.values() for item in waiting]

    def clear(self) -> list[Held]:
        """Forget every held message and return them (shutdown gives them back; a lost
        connection has already given them back to the broker)."""
        everything = self.waiting()
        self._held.clear()
        self._passes.clear()
        return everything
