"""ReadAhead: a consuming child reads what RabbitMQ sent while its task runs (processes layer).

A child runs each task in the thread that owns its broker connection, so while a long task
runs nobody reads the messages RabbitMQ has already pushed into the prefetch window: they
are the child's, yet ``inspect reserved`` (and the console) cannot see them, and a revoke
cannot find them, until the task returns. Here a second thread reads the connection while
a task has run for longer than ``DELAY``, and only then: the messages it receives are booked
as the consumer books any (reserved, since the solo pool is busy), and the task's thread
takes the connection back before it settles the task.

Only on RabbitMQ: the messages were sent to this child either way, and a dead child's
unacknowledged ones go back to the queue with its connection. On Redis and ``django://`` a
message a child takes stays the child's until the visibility timeout if it dies, so a child
there takes nothing more while it works.

The two threads never use the connection at once: the reader holds ``_lock`` for each read
and checks, under it, that the task it waited out is still running; the task's thread, once
the task returned, takes ``_lock`` once before it goes on (at most one read, ``READ_WAIT``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import kombu

if TYPE_CHECKING:
    from djtasks.worker.consumer import Consumer

logger = logging.getLogger("djtasks.worker")

#: How long a task runs before its messages are read beside it; shorter ones never wait.
DELAY = 0.2
#: The longest one read blocks: what a task that ran past DELAY may wait for when it ends.
READ_WAIT = 0.02


class ReadAhead:
    """Read ``consumer``'s connection beside the tasks that run longer than ``DELAY``."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._lock = threading.Lock()
        self._task = 0  # how many tasks have started; which one runs, while _running
        self._running = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def applies(broker_url: str) -> bool:
        """Whether ``broker_url`` is RabbitMQ's (an AMQP transport): the only case to read ahead."""
        return kombu.Connection(broker_url).transport.driver_type == "amqp"

    def around(self, target: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``target`` (the pool's), run so that the reader may read while it runs."""
        def run(job: Any) -> Any:
            self._task += 1
            self._running = True
            try:
                return target(job)
            finally:
                self._running = False
                with self._lock:  # the reader's read, if one is under way, ends first
                    pass
        return run

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="djtasks-read-ahead", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader (between tasks: it reads nothing then) and wait for it."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * DELAY)

    def _serve(self) -> None:
        while True:
            seen = self._task
            if self._stopped.wait(DELAY):
                return
            if self._running and self._task == seen:  # one task has run for DELAY or more
                try:
                    self._read_while(seen)
                except Exception:  # a bug here must not end reading ahead for good
                    logger.exception("worker: reading ahead failed")

    def _read_while(self, task: int) -> None:
        while True:
            with self._lock:
                if not self._running or self._task != task:
                    return
                connection = self.consumer.connection
                if connection is None:
                    return
                try:
                    connection.drain_events(timeout=READ_WAIT)
                except TimeoutError:
                    continue
                except Exception:  # the task's thread meets a broken connection itself
                    logger.debug("worker: reading ahead stopped for this task", exc_info=True)
                    return
