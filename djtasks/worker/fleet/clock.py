"""SharedClock: one Lamport clock for a fleet's parent and children (processes layer).

A worker's events carry one clock that only moves forward (Flower and ``celery events``
order a worker's events by it). In a fleet the parent and each child send events under the
same hostname, so they share the clock: a counter in shared memory, made before the fork.
"""

from __future__ import annotations

import multiprocessing


class SharedClock:
    """kombu's LamportClock interface (``value``, ``forward``, ``adjust``) across processes."""

    def __init__(self, initial: int = 0) -> None:
        self._value = multiprocessing.Value("Q", initial)  # its lock works across fork

    @property
    def value(self) -> int:
        return int(self._value.value)

    def forward(self) -> int:
        with self._value.get_lock():
            self._value.value += 1
            return int(self._value.value)

    def adjust(self, other: int) -> int:
        with self._value.get_lock():
            self._value.value = max(self._value.value, int(other)) + 1
            return int(self._value.value)
