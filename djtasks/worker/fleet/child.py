"""A consuming child: a solo worker of its own inside a prefork worker (processes layer).

With ``worker_consume_in_children``, each prefork child opens its own broker connection,
receives within its own prefetch window, runs each task in its main thread, acknowledges
and sends its task events itself: a task never crosses a pipe. What the parent needs to
know it learns without a message per task: the running Request sits in the child's slot of
shared memory (``slots``), and remote control reaches the child over its pipe, answered by
a thread of the child from the child's own books (``ChildLink``).

The child ignores SIGINT and SIGTERM, as every prefork child does: the parent decides when
it stops. ``stop`` on the pipe (or the pipe closing) is a warm shutdown, SIGQUIT a cold one.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NoReturn

from djtasks.backends.base import ResultBackend
from djtasks.worker.features import Feature
from djtasks.worker.fleet.orphans import LostInSibling
from djtasks.worker.fleet.readahead import ReadAhead
from djtasks.worker.fleet.slots import RunningSlots
from djtasks.worker.heartbeat import WorkerStats
from djtasks.worker.pools.base import Outcome
from djtasks.worker.pools.process import resident_kib, run_in_child
from djtasks.worker.settlement import Fate

if TYPE_CHECKING:
    from djtasks.worker.worker import Worker

logger = logging.getLogger("djtasks.worker")

#: Commands that touch the broker connection: kombu's is not for two threads, so the
#: child's main loop runs them between two steps, and answers then.
MAIN_THREAD_COMMANDS = frozenset({"add_consumer", "cancel_consumer"})
#: How many times a snapshot is taken again when the main thread changed the books under it.
SNAPSHOT_ATTEMPTS = 5


class InSlot(Feature):
    """Keep the child's slot saying what it runs: written before a task starts, cleared after.

    The solo pool runs the task inside submit(), so ``after_start`` comes when it returned.
    """

    def __init__(self, slots: RunningSlots, index: int) -> None:
        self.slots = slots
        self.index = index

    def before_start(self, request: Any, message: Any) -> bool:
        self.slots.write(self.index, request, getattr(message, "delivery_tag", None))
        return True

    def after_start(self, request: Any, message: Any) -> None:
        self.slots.clear(self.index)

    def publish_counts(self, stats: WorkerStats) -> None:
        """Between two steps: the child's counters, which the parent's heartbeat sums."""
        self.slots.set_counts(self.index, stats.processed, stats.failed)


class Recycling(Feature):
    """Stop the child warmly after ``max_tasks`` tasks or once it holds ``max_memory`` KiB."""

    def __init__(self, max_tasks: int | None, max_memory: int | None) -> None:
        self.stop: Callable[[], None] = lambda: None  # the worker's request_stop, once built
        self.max_tasks = max_tasks
        self.max_memory = max_memory
        self.done = 0

    def after_complete(self, request: Any, outcome: Outcome, fate: Fate) -> None:
        self.done += 1
        reason = ""
        if self.max_tasks and self.done >= self.max_tasks:
            reason = f"it ran {self.done} tasks (max_tasks_per_child)"
        elif self.max_memory and (rss := resident_kib()) and rss > self.max_memory:
            reason = f"its resident memory is {rss} KiB, over {self.max_memory} KiB " \
                     f"(max_memory_per_child)"
        if reason:
            logger.info("Replacing pool process %s: %s", os.getpid(), reason)
            self.stop()


class ChildLink:
    """The child's end of its pipe: a thread that answers the parent's commands."""

    def __init__(self, conn: Connection, worker: Worker) -> None:
        self.conn = conn
        self.worker = worker
        self.for_main_thread: queue.SimpleQueue[tuple[int, str, dict]] = queue.SimpleQueue()
        self._send_lock = threading.Lock()

    def send(self, item: Any) -> None:
        with self._send_lock:
            self.conn.send_bytes(pickle.dumps(item))

    def start(self) -> None:
        threading.Thread(target=self._serve, name="djtasks-child-link", daemon=True).start()

    def run_pending(self) -> None:
        """In the main loop: run the commands that must not run beside the consumer."""
        while True:
            try:
                ticket, name, arguments = self.for_main_thread.get_nowait()
            except queue.Empty:
                return
            self.reply(ticket, self.answer(name, arguments))

    def reply(self, ticket: int, answer: Any) -> None:
        with contextlib.suppress(OSError):
            self.send(("reply", ticket, answer))

    def _serve(self) -> None:
        while True:
            try:
                ticket, name, arguments = pickle.loads(self.conn.recv_bytes())  # noqa: S301 - our parent wrote it
            except (EOFError, OSError):  # the parent is gone, or closed our pipe: stop warm
                self.worker.request_stop()
                return
            except Exception:  # a command we cannot read fails alone
                logger.exception("worker: child %s could not read a command", os.getpid())
                continue
            if name == "stop":
                self.worker.request_stop()
                continue
            if name in MAIN_THREAD_COMMANDS:
                self.for_main_thread.put((ticket, name, arguments))
                continue
            self.reply(ticket, self.answer(name, arguments))

    def answer(self, name: str, arguments: dict) -> Any:
        """Run control command ``name`` on this child's books; an error is the answer."""
        handler = self.worker.control.handlers.get(name)
        if handler is None:
            return {"error": f"unknown command {name!r}"}
        for _attempt in range(SNAPSHOT_ATTEMPTS):
            try:
                return _with_own_pid(name, handler(**arguments))
            except RuntimeError:  # a dict of the books changed while it was read: again
                continue
            except Exception as exc:  # one bad command answers an error; the child goes on
                logger.warning("control: %s failed in process %s: %s", name, os.getpid(), exc)
                return {"error": f"{name}: {exc}"}
        return {"error": f"{name}: the books kept changing; try again"}


def _with_own_pid(name: str, reply: Any) -> Any:
    # The solo pool runs tasks in the child itself: the child is their pool process.
    if name == "active" and isinstance(reply, list):
        for entry in reply:
            entry["worker_pid"] = os.getpid()
    return reply


def run_child(build: Callable[[list[Feature]], Worker], conn: Connection,
              slots: RunningSlots, index: int, inherited: list[Any],
              recycling: dict[str, int | None], backend: ResultBackend) -> NoReturn:
    """In a forked child: build its solo worker, consume until told to stop, then exit.

    It leaves through os._exit, as every prefork child does: it holds copies of the
    parent's objects, whose finalizers must not run here.
    """
    def serve() -> int:
        # Log lines name the process as Celery's do: ForkPoolWorker-1, -2, ...
        multiprocessing.current_process().name = f"ForkPoolWorker-{index + 1}"
        recycler = Recycling(recycling["max_tasks_per_child"], recycling["max_memory_per_child"])
        in_slot = InSlot(slots, index)
        worker = build([in_slot, LostInSibling(slots, index, backend), recycler])
        worker.between_steps.append(lambda: in_slot.publish_counts(worker.consumer.stats))
        recycler.stop = worker.stop_between_tasks
        reader = ReadAhead(worker.consumer)
        if ReadAhead.applies(worker.app.settings.broker_url):
            worker.pool.target = reader.around(worker.pool.target)
            reader.start()
        link = ChildLink(conn, worker)
        worker.between_steps.append(link.run_pending)
        link.start()
        try:
            return worker.run_as_child(on_ready=lambda: link.send(("ready", os.getpid(), None)))
        finally:
            reader.stop()

    run_in_child(serve, inherited)

