"""Autoscaler: grow the pool while work waits, shrink it after it idled (processes layer).

``runworker --autoscale max,min`` starts ``min`` pool members and a prefetch window sized
for ``max``. Each round of the main loop asks for as many members as there are tasks
running or reserved, between ``min`` and ``max``: more at once, fewer only after the pool
has had more members than it needed for ``worker_autoscale_keepalive`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from djtasks.worker.consumer import Consumer


def parse_autoscale(value: str) -> tuple[int, int]:
    """Return ``(max, min)`` from Celery's ``"max,min"`` (or ``"max"``: min 1)."""
    parts = [part.strip() for part in value.split(",")]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2):
        raise ValueError(f"autoscale: expected 'max,min' like '10,3', got {value!r}")
    return check_bounds(numbers[0], numbers[1] if len(numbers) == 2 else 1)


def check_bounds(maximum: int, minimum: int) -> tuple[int, int]:
    if not 1 <= minimum <= maximum:
        raise ValueError(f"autoscale: expected 1 <= min <= max, got max={maximum} min={minimum}")
    return maximum, minimum


class Autoscaler:
    """Resize one consumer's pool to its demand; ``tick()`` runs in the main loop."""

    def __init__(self, consumer: Consumer, maximum: int, minimum: int, keepalive: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.maximum, self.minimum = check_bounds(maximum, minimum)
        self.keepalive = keepalive
        self.clock = clock
        self._needed_at = clock()  # when the pool last needed all of its members

    def update(self, maximum: int | None = None, minimum: int | None = None) -> None:
        """Change the bounds (remote control ``autoscale``); the next tick applies them."""
        self.maximum, self.minimum = check_bounds(
            self.maximum if maximum is None else int(maximum),
            self.minimum if minimum is None else int(minimum))

    def tick(self) -> None:
        pool = self.consumer.pool
        demand = len(self.consumer.active) + len(self.consumer.reserved)
        wanted = min(max(demand, self.minimum), self.maximum)
        now = self.clock()
        if wanted >= pool.limit:
            self._needed_at = now
            if wanted > pool.limit:
                pool.grow(wanted - pool.limit)
        elif now - self._needed_at >= self.keepalive:
            pool.shrink(pool.limit - wanted)
            self._needed_at = now
