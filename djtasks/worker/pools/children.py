"""The prefork pool's slots and what their children report: outcomes, readiness, deaths (processes layer).

The supervisor thread of ``PreforkPool`` drives a ``Children``: it hands it each message a
child sends, sweeps for children that died, signals those past a time limit, and retires
a child to be replaced when it has run its share of tasks or memory.

Jobs submitted while every child is busy wait here, in the parent (``waiting``; as many
per child as ``backlog_per_child`` says, and the worker says 1). The supervisor sends the
first of them to the first child that reports its job done, in the same step, so a child
starts its next job without waiting for the worker's main thread to hear of the last one
and dispatch again: that round trip left the children idle about half the time in the
drain benchmark. A waiting job is in no child's pipe, so it goes to whichever child frees
first (no task stuck behind a long one), a child's death does not take it along, and its
time limits start when it is sent.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from djtasks.worker.pools.base import OnDone, Outcome, TargetFailure, WorkerLost, deliver
from djtasks.worker.pools.interrupt import SOFT_LIMIT_SIGNAL
from djtasks.worker.pools.process import reap, send_signal
from djtasks.worker.pools.timelimits import Deadlines, TimeLimits

logger = logging.getLogger("djtasks.worker.pools")


class Slot(enum.Enum):
    STARTING = "starting"  # forked, running on_process_init
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"  # reaped or being reaped; waits for a replacement


@dataclass(eq=False)
class Child:
    """One slot of the pool and the process filling it (mutable, guarded by the pool lock)."""

    pid: int = 0
    conn: Connection | None = None
    state: Slot = Slot.DEAD
    job: Any = None
    on_done: OnDone | None = None
    respawn_at: float = 0.0
    tasks: int = 0  # jobs this process ran: it is replaced at max_tasks_per_child
    retire: str = ""  # why this process ends after its job (pool_restart, pool_shrink)
    leaving: bool = False  # the slot goes away with its process (pool_shrink): no replacement


@dataclass(frozen=True, eq=False)
class Waiting:
    """A submitted job no child has yet: pickled already, so handing it over is one write."""

    job: Any
    data: bytes
    on_done: OnDone
    on_start: Callable[[Any], None] | None = None

    def started(self) -> None:
        """Tell the pool's on_start a child took this job; its failure is only logged."""
        if self.on_start is None:
            return
        try:
            self.on_start(self.job)
        except Exception:
            logger.exception("on_start failed for a job of the pool; the pool carries on")

    def give_back(self, lost: WorkerLost) -> None:
        """Report this job never started (``lost`` says why) to its on_done."""
        deliver(self.on_done, self.job, Outcome(lost=lost, started=False))


class Children:
    """The pool's slots, and what their processes report: outcomes, readiness, deaths.

    Every field of every slot is guarded by ``lock``. The event methods run in the
    supervisor thread, or in stop() once the supervisor is joined: never two at once.
    """

    def __init__(self, limit: int, max_tasks: int | None = None,
                 max_memory: int | None = None, init_retry: float = 1.0,
                 backlog_per_child: int = 0) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.slots = [Child() for _ in range(limit)]
        self.deadlines: Deadlines[Child] = Deadlines()  # time limits of the running jobs
        self.max_tasks = max_tasks
        self.max_memory = max_memory  # KiB
        self.init_retry = init_retry  # a child whose on_process_init raised waits this long
        self.waiting: deque[Waiting] = deque()  # submitted while every child was busy
        self.backlog_per_child = backlog_per_child

    def backlog_room(self) -> int:
        """How many more jobs may wait for a child: ``backlog_per_child`` per slot that stays."""
        staying = sum(1 for child in self.slots if not child.leaving)
        return max(0, self.backlog_per_child * staying - len(self.waiting))

    def assign(self, child: Child, entry: Waiting, now: float) -> Connection | None:
        """Give ``entry`` to ``child`` (under the lock); return the pipe to send it on.

        The caller writes ``entry.data`` to the pipe after releasing the lock: if the write
        fails the child is dead, and burying it reports the job lost.
        """
        child.state, child.job, child.on_done = Slot.BUSY, entry.job, entry.on_done
        self.deadlines.start(child, TimeLimits.of(entry.job), now)
        return child.conn

    def take_waiting(self, match: Any) -> Waiting | None:
        """Remove and return the first waiting job ``match`` accepts (under the lock)."""
        for entry in self.waiting:
            if match(entry.job):
                self.waiting.remove(entry)
                self.cond.notify_all()
                return entry
        return None

    def in_state(self, state: Slot) -> list[Child]:
        return [child for child in self.slots if child.state is state]

    def alive(self) -> list[Child]:
        return [child for child in self.slots if child.state is not Slot.DEAD]

    # -- events ------------------------------------------------------------------------
    def watch(self, wake_r: int, timeout: float) -> None:
        """Wait for messages or deaths (or a byte on ``wake_r``) and handle them."""
        with self.lock:
            watched = {c.conn: c for c in self.alive() if c.conn is not None}
        for ready in wait([wake_r, *watched], timeout=timeout):
            if isinstance(ready, int):
                with contextlib.suppress(BlockingIOError):
                    os.read(ready, 512)
                continue
            conn = cast(Connection, ready)  # wait() returns what it was given: not an int, a child's
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):  # the child is gone
                self.retire_and_bury(watched[conn])
                continue
            self.handle(watched[conn], data)

    def handle(self, child: Child, data: bytes) -> None:
        try:
            kind, payload = pickle.loads(data)  # noqa: S301 - our own child wrote it
        except Exception as exc:
            context = "the outcome could not be unpickled"
            kind, payload = "done", Outcome(error=TargetFailure.from_exception(exc, context))
        if kind == "done":
            outcome, rss = payload if isinstance(payload, tuple) else (payload, None)
            self.finish(child, outcome, rss)
        elif kind == "ready":
            entry = None
            with self.lock:
                if child.state is Slot.STARTING:
                    child.state = Slot.IDLE
                    entry = self.next_waiting(child)
                    self.cond.notify_all()
            self.send_waiting(child, entry)
        elif kind == "init-failed":
            logger.error("on_process_init raised in pool process %s; replacing it in %ss:\n%s",
                         child.pid, self.init_retry, payload)
            with self.lock:
                child.respawn_at = time.monotonic() + self.init_retry

    def next_waiting(self, child: Child) -> Waiting | None:
        """Under the lock: give ``child`` the first waiting job, if any; return it."""
        if not self.waiting:
            return None
        entry = self.waiting.popleft()
        self.assign(child, entry, time.monotonic())
        return entry

    def send_waiting(self, child: Child, entry: Waiting | None) -> None:
        """Outside the lock: write the job next_waiting gave ``child``, and say it started."""
        if entry is not None:
            send_job(child.conn, entry.data)
            entry.started()

    def give_back_waiting(self) -> None:
        """Report every waiting job as never started (the pool stops): its message goes back."""
        with self.lock:
            stranded, self.waiting = list(self.waiting), deque()
            self.cond.notify_all()
        for entry in stranded:
            entry.give_back(WorkerLost(cause="the pool stopped before a process took the job"))

    def finish(self, child: Child, outcome: Outcome, rss: int | None = None) -> None:
        entry = None
        with self.lock:
            job, on_done = child.job, child.on_done
            child.job = child.on_done = None
            # The job returned: a hard limit that passed meanwhile did not cut it short.
            timeout = self.deadlines.finish(child, hard_enforced=False)
            child.tasks += 1
            recycle = self.recycle_reason(child, rss) if child.state is Slot.BUSY else ""
            if child.state is Slot.BUSY and not recycle:
                # The next job first, so that the child works while the outcome is delivered.
                entry = self.next_waiting(child)
                if entry is not None:
                    self.cond.notify_all()  # the backlog has room again
        self.send_waiting(child, entry)
        if timeout is not None and outcome.timeout is None:
            outcome = replace(outcome, timeout=timeout)
        if on_done is not None:
            deliver(on_done, job, outcome)
        if recycle:
            logger.info("Replacing pool process %s: %s", child.pid, recycle)
            with self.lock:
                conn = child.conn
            if conn is not None:
                conn.close()  # the child exits when it reads end-of-file
            self.retire_and_bury(child, recycle, expected=True)
            return
        with self.lock:
            # The slot frees only after on_done, so a caller woken by wait_for_free_slot()
            # has already been told about the job that made room.
            if child.state is Slot.BUSY and child.job is None:
                child.state = Slot.IDLE
            self.cond.notify_all()

    def recycle_reason(self, child: Child, rss: int | None) -> str:
        """Say why ``child`` must be replaced after the job it just finished ("" if not)."""
        if child.retire:
            return child.retire
        if self.max_tasks is not None and child.tasks >= self.max_tasks:
            return f"it ran {child.tasks} tasks (max_tasks_per_child)"
        if self.max_memory is not None and rss is not None and rss > self.max_memory:
            return f"its resident memory is {rss} KiB, over {self.max_memory} KiB " \
                   f"(max_memory_per_child)"
        return ""

    def enforce_time_limits(self, now: float) -> None:
        """Signal the children whose jobs ran past a limit: soft, a signal; hard, SIGKILL."""
        with self.lock:
            for child, timeout in self.deadlines.due(now):
                if child.state is not Slot.BUSY:
                    continue
                label = getattr(child.job, "label", child.job)
                if timeout.soft:
                    logger.warning("Soft time limit (%gs) exceeded for %s", timeout.limit, label)
                    send_signal(child.pid, SOFT_LIMIT_SIGNAL)
                else:
                    logger.error("Hard time limit (%gs) exceeded for %s; killing its process %s",
                                 timeout.limit, label, child.pid)
                    send_signal(child.pid, signal.SIGKILL)

    def wait_time(self, longest: float) -> float:
        """How long the supervisor may wait: until the next time limit, at most ``longest``."""
        with self.lock:
            return self.deadlines.wait_time(time.monotonic(), longest)

    def sweep(self) -> None:
        """Reap children that exited without their pipe reading end-of-file."""
        exited = []
        with self.lock:  # reap and retire together: no signal may reach a reaped pid
            for child in self.alive():
                try:
                    pid, status = os.waitpid(child.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = child.pid, None
                if pid:
                    child.state = Slot.DEAD
                    exited.append((child, status))
        for child, status in exited:
            self.bury(child, status)

    def end(self, kill: bool) -> None:
        """Close every pipe (children exit at end-of-file) or SIGKILL every child; reap all.

        Jobs still waiting for a child are given back, as never started.
        """
        alive = self.alive()
        for child in alive:
            if kill:
                send_signal(child.pid, signal.SIGKILL)
            elif child.conn is not None:
                child.conn.close()
        for child in alive:
            self.retire_and_bury(child, "killed by a cold stop" if kill else "", expected=True)
        self.give_back_waiting()

    def retire_and_bury(self, child: Child, cause: str = "", expected: bool = False) -> WorkerLost:
        with self.lock:
            if child.state is Slot.DEAD:
                return WorkerLost(child.pid, cause=cause)
            child.state = Slot.DEAD  # from now on no job and no signal goes to this pid
        return self.bury(child, reap(child.pid), cause, expected)

    def bury(self, child: Child, status: int | None, cause: str = "",
             expected: bool = False) -> WorkerLost:
        """Report the job of a retired child lost, unless it sent its outcome before dying."""
        self.drain(child)
        with self.lock:
            timeout = self.deadlines.finish(child)
        if timeout is not None and not timeout.soft:
            cause, expected = timeout.describe(), True  # logged when the kill was sent
        lost = WorkerLost.from_wait_status(child.pid, status, cause)
        with self.lock:
            job, on_done = child.job, child.on_done
            child.job = child.on_done = None
            if child.conn is not None:
                child.conn.close()
            child.respawn_at = max(child.respawn_at, time.monotonic())
            self.cond.notify_all()
        if on_done is not None:
            if not expected:
                logger.error("Pool process lost its job: %s", lost)
            deliver(on_done, job, Outcome(lost=lost, timeout=timeout))
        elif not expected:
            logger.warning("Idle pool process went away: %s; replacing it", lost)
        return lost

    def drain(self, child: Child) -> None:
        """Handle the complete messages a dead child left in its pipe, without blocking."""
        conn = child.conn
        if conn is None or conn.closed:
            return
        os.set_blocking(conn.fileno(), False)
        while True:
            try:
                if not conn.poll():
                    return
                data = conn.recv_bytes()
            except (EOFError, OSError):  # end of file, or a message cut short by the death
                return
            self.handle(child, data)


def send_job(conn: Connection | None, data: bytes) -> None:
    """Write a job to a child's pipe; a failed write means the child died (it is buried then)."""
    if conn is None:
        return
    with contextlib.suppress(OSError):
        conn.send_bytes(data)
