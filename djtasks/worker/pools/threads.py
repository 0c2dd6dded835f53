"""The threads pool: a fixed set of threads in the worker process run jobs (processes layer)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from django.db import connections

from djtasks.worker.pools.base import (
    OnDone,
    Outcome,
    Pool,
    PoolFull,
    PoolStartError,
    State,
    Target,
    Ticket,
    WorkerLost,
    check_member_count,
    deliver,
)
from djtasks.worker.pools.interrupt import raise_in_thread, run_in_thread_armed
from djtasks.worker.pools.timelimits import Deadlines, TimeLimits

logger = logging.getLogger("djtasks.worker.pools")

WATCH_TICK = 1.0  # longest sleep of the time-limit watcher
ABANDONED = "abandoned by a cold stop: a thread cannot be killed, the job was left running"


class ThreadsPool(Pool):
    """``limit`` daemon threads take jobs from one queue; on_done runs in the executing thread.

    A thread cannot be killed, so a cold stop reports running jobs lost at once and leaves
    their threads to finish (their late outcomes are dropped). The threads are daemons, so
    they do not hold up the exit of a worker that stops cold.

    Time limits: one more thread watches them. Past its soft limit, a job's thread gets
    SoftTimeLimitExceeded raised asynchronously (at its next Python instruction: a thread
    inside one long C call sees it when the call returns). A hard limit cannot be
    enforced: a warning is logged and the job runs on.
    """

    name: ClassVar[str] = "threads"
    supports_hard_kill: ClassVar[bool] = False

    def __init__(self, limit: int, target: Target, *,
                 on_process_init: Callable[[], None] | None = None, **options: int | None) -> None:
        super().__init__(limit, target, on_process_init=on_process_init, **options)
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._watcher = threading.Condition(lock)  # wakes the time-limit watcher only
        self._deadlines: Deadlines[Ticket] = Deadlines()
        self._threads_of: dict[Ticket, int] = {}  # running ticket -> its thread's ident
        self._state = State.NEW
        self._queue: queue.SimpleQueue[Ticket | None] = queue.SimpleQueue()
        self._running: set[Ticket] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        with self._cond:
            if self._state is not State.NEW:
                raise PoolStartError(f"expected a new pool, got a {self._state.value} one")
            self._state = State.RUNNING
        self._threads = [threading.Thread(target=self._serve, name=f"djtasks-threads-{index}",
                                          daemon=True) for index in range(self.limit)]
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._watch_time_limits, name="djtasks-threads-limits",
                         daemon=True).start()

    def free_slots(self) -> int:
        with self._cond:
            return self._free()

    def _free(self) -> int:
        return self.limit - len(self._running) if self._state is State.RUNNING else 0

    def submit(self, job: Any, on_done: OnDone) -> None:
        ticket = Ticket(job, on_done)
        with self._cond:
            if not self._free():
                raise PoolFull(f"all {self.limit} threads are busy, or the pool is not running")
            self._running.add(ticket)
        self._queue.put(ticket)

    def wait_for_free_slot(self, timeout: float | None) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._state is not State.RUNNING or self._free(), timeout)
            return self._free() > 0

    def stop(self, wait: bool = True) -> None:
        with self._cond:
            if self._state in (State.NEW, State.STOPPED):
                self._state = State.STOPPED
                return
            self._state = State.STOPPING
            self._cond.notify_all()
            if wait:
                self._cond.wait_for(lambda: not self._running)
            abandoned = [ticket for ticket in self._running if ticket.settle()]
            self._running.clear()
            self._state = State.STOPPED
            self._cond.notify_all()
            self._watcher.notify()
        for ticket in abandoned:
            deliver(ticket.on_done, ticket.job, Outcome(lost=WorkerLost(cause=ABANDONED)))
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def info(self) -> dict[str, Any]:
        with self._cond:
            return {"pool": self.name, "limit": self.limit, "state": self._state.value,
                    "running": len(self._running)}

    def grow(self, n: int = 1) -> None:
        """Start ``n`` more threads."""
        check_member_count(n, "threads")
        with self._cond:
            if self._state is not State.RUNNING:
                raise RuntimeError(f"expected a running pool, got a {self._state.value} one")
            first = len(self._threads)
            new = [threading.Thread(target=self._serve, name=f"djtasks-threads-{first + index}",
                                    daemon=True) for index in range(n)]
            self._threads += new
            self.limit += n
            self._cond.notify_all()
        for thread in new:
            thread.start()

    def shrink(self, n: int = 1) -> None:
        """End ``n`` threads, each once it is idle; one stays."""
        check_member_count(n, "threads")
        with self._cond:
            if n > self.limit - 1:
                raise ValueError(f"pool_shrink: expected at most {self.limit - 1} "
                                 f"(one thread stays), got {n}")
            self.limit -= n
        for _ in range(n):
            self._queue.put(None)  # behind the queued jobs: a thread takes it when idle

    def _serve(self) -> None:
        try:
            while (ticket := self._queue.get()) is not None:
                self._run(ticket)
        finally:
            # Each thread has its own database connections; close them as the thread ends
            # rather than leaving them to the garbage collector.
            connections.close_all()

    def _run(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.settled:  # abandoned by a cold stop before it started
                return
            self._threads_of[ticket] = threading.get_ident()
            limits = TimeLimits.of(ticket.job)
            if limits:
                self._deadlines.start(ticket, limits, time.monotonic())
                self._watcher.notify()  # it sleeps until the earliest deadline it knows of
        outcome = run_in_thread_armed(self.target, ticket.job, lambda: self._disarm(ticket))
        with self._cond:
            timeout = self._deadlines.finish(ticket, hard_enforced=False)
            first = ticket.settle()
        if timeout is not None:
            outcome = replace(outcome, timeout=timeout)
        if first:
            deliver(ticket.on_done, ticket.job, outcome)
        with self._cond:
            # The slot frees only after on_done, so a caller woken by wait_for_free_slot()
            # has already been told about the job that made room.
            self._running.discard(ticket)
            self._cond.notify_all()

    def _disarm(self, ticket: Ticket) -> None:
        with self._cond:  # the watcher raises under this lock: after it, nothing more comes
            self._threads_of.pop(ticket, None)

    def _watch_time_limits(self) -> None:
        """Raise into threads past their soft limit; warn of hard limits that cannot be kept."""
        with self._cond:
            while self._state is State.RUNNING or self._running:
                now = time.monotonic()
                for ticket, timeout in self._deadlines.due(now):
                    ident = self._threads_of.get(ticket)
                    if ident is None:
                        continue
                    label = getattr(ticket.job, "label", ticket.job)
                    if timeout.soft:
                        logger.warning("Soft time limit (%gs) exceeded for %s", timeout.limit, label)
                        raise_in_thread(ident)
                    else:
                        logger.warning("Hard time limit (%gs) exceeded for %s: the threads pool "
                                       "cannot kill a thread, the task runs on", timeout.limit, label)
                if self._state is State.STOPPED:
                    return
                self._watcher.wait(self._deadlines.wait_time(now, WATCH_TICK))

