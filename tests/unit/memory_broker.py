"""What the unit tests read back from kombu's in-process memory:// broker."""

from __future__ import annotations

import kombu

from djtasks.testing import InProcessWorker


def drain(queue: str = "celery", url: str = "memory://") -> list:
    """Take every message waiting in ``queue`` and return them, acked.

    A connection of its own (memory:// state is per process), so that looking does not
    build the publisher of the app under test.
    """
    taken = []
    with kombu.Connection(url) as connection, connection.SimpleQueue(queue) as simple:
        while True:
            try:
                message = simple.get(block=False)
            except simple.Empty:
                return taken
            message.ack()
            taken.append(message)


def run_queued_tasks() -> None:
    """Run every queued task, and what they queue, with the in-process worker."""
    with InProcessWorker() as worker:
        worker.join(timeout=30, propagate=False)
