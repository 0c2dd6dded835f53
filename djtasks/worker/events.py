"""The worker's events: a bounded buffer and the thread that sends it (processes layer).

Events are news, never work: whoever emits one (the consume loop, the heartbeat thread)
builds it and puts it in a bounded queue without waiting; when the queue is full the event
is dropped and counted. One sender thread publishes them on a broker connection of its own
(the consumer's is not to be shared between threads), so a broker slow to take events never
slows a task down. A broker error makes the thread drop what it was sending, wait with
backoff and connect again; nothing stops the thread but ``stop()``.

Which events: ``worker-*`` unless ``worker_send_worker_events`` is False; ``task-*`` while
task events are on (``runworker -E``, ``worker_send_task_events`` or the ``enable_events``
control command, until ``disable_events``). Fields and names are Celery's.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import kombu
from django.db import connections

from djtasks.backends.fork_safety import DATABASE_WRITES
from djtasks.publish import EventDispatcher
from djtasks.task import HIDDEN_ARGUMENTS
from djtasks.utils import events
from djtasks.utils.retries import Backoff

logger = logging.getLogger("djtasks.worker")

#: How long the sender waits for an event before it looks whether it is to stop.
POLL = 0.5


class EventSender:
    """Buffer events and publish them from a thread of their own."""

    def __init__(self, new_connection: Callable[[], kombu.Connection], hostname: str, *,
                 buffer: int = 10_000, task_events: bool = False, worker_events: bool = True,
                 database: str | None = None) -> None:
        self.new_connection = new_connection
        #: The database alias a django:// broker writes events to (None on another broker).
        self.database = database
        self.hostname = hostname
        self.clock: events.Clock = events.LamportClock()
        self.task_events = task_events
        self.worker_events = worker_events
        self.sent = 0
        self.dropped = 0
        self._pid = os.getpid()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max(buffer, 1))
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._backoff = Backoff()

    # -- emitting (any thread) -----------------------------------------------------------
    def enabled(self, event_type: str) -> bool:
        group = events.group_of(event_type)
        return self.task_events if group == "task" else self.worker_events

    def emit(self, event_type: str, **fields: Any) -> None:
        """Queue one event if its group is on; never wait, never raise."""
        if not self.enabled(event_type):
            return
        event = events.build_event(event_type, hostname=self.hostname, clock=self.clock.forward(),
                                   pid=self._pid, **fields)
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("events: the broker is slow to take events; %d dropped so far",
                               self.dropped)

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="djtasks-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` s), then stop the thread."""
        if self._thread is None:
            return
        self._stopping.set()
        try:
            self._queue.put(None, timeout=timeout)  # wakes the thread once the rest is sent
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        dispatcher: EventDispatcher | None = None
        while True:
            try:
                event = self._queue.get(timeout=POLL)
            except queue.Empty:
                if self._stopping.is_set():
                    break
                continue
            if event is None:
                break
            try:
                if dispatcher is None:
                    dispatcher = EventDispatcher(self.new_connection(), self.hostname, self.clock)
                with DATABASE_WRITES.writing(self.database):  # django://: an event is a row
                    dispatcher.publish(event)
            except Exception as exc:  # the thread never dies: drop this event, wait, reconnect
                self.dropped += 1
                _discard(dispatcher)
                dispatcher = None
                pause = self._backoff.next_delay()
                logger.warning("events: cannot send to the broker (%s); trying again in %.1fs",
                               exc, pause)
                if self._stopping.wait(pause):
                    break
            else:
                self.sent += 1
                self._backoff.reset()
        with DATABASE_WRITES.writing(self.database):  # a close is a write too (backends.fork_safety)
            _discard(dispatcher)
            connections.close_all()  # django://: this thread's own database connections


def _discard(dispatcher: EventDispatcher | None) -> None:
    if dispatcher is not None:
        try:
            dispatcher.connection.release()
        except Exception:  # broken already
            logger.debug("events: error while releasing the connection", exc_info=True)


class TaskEvents:
    """The task events of one worker's main process, with Celery's fields."""

    def __init__(self, sender: EventSender) -> None:
        self.sender = sender

    @property
    def on(self) -> bool:
        return self.sender.task_events

    def received(self, request: Any, sensitive: bool = False) -> None:
        """Announce ``request``; a ``sensitive`` task's arguments only as its argsrepr, or "[hidden]"."""
        if not self.on:
            return
        message = request.message
        self.sender.emit(
            "task-received", uuid=message.id, name=message.task,
            args=message.argsrepr or (HIDDEN_ARGUMENTS if sensitive else repr(tuple(message.args))),
            kwargs=message.kwargsrepr or (HIDDEN_ARGUMENTS if sensitive
                                          else repr(dict(message.kwargs))),
            root_id=message.root_id, parent_id=message.parent_id, retries=message.retries,
            eta=message.eta.isoformat() if message.eta is not None else None,
            expires=message.expires.isoformat() if message.expires is not None else None)

    def started(self, request: Any) -> None:
        if self.on:
            self.sender.emit("task-started", uuid=request.message.id)

    def finished(self, request: Any, state: str, runtime: float | None, summary: str,
                 traceback: str = "", requeue: bool = False) -> None:
        """The end of a run, from its Report (or the failure the main process recorded)."""
        if not self.on:
            return
        uuid = request.message.id
        if state == "SUCCESS":
            self.sender.emit("task-succeeded", uuid=uuid, result=summary, runtime=runtime)
        elif state == "FAILURE":
            self.sender.emit("task-failed", uuid=uuid, exception=summary, traceback=traceback)
        elif state == "RETRY":
            self.sender.emit("task-retried", uuid=uuid, exception=summary, traceback=traceback)
        elif state == "REJECTED":
            self.sender.emit("task-rejected", uuid=uuid, requeue=requeue)

    def revoked(self, task_id: str, *, terminated: bool = False, signum: int | None = None,
                expired: bool = False) -> None:
        if self.on:
            self.sender.emit("task-revoked", uuid=task_id, terminated=terminated, signum=signum,
                             expired=expired)

    def rejected(self, task_id: str | None) -> None:
        if self.on and task_id:
            self.sender.emit("task-rejected", uuid=task_id, requeue=False)
