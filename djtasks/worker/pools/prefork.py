"""The prefork pool: forked child processes run jobs sent to them over pipes (processes layer).

The parent keeps one duplex pipe per child. It pickles a job onto an idle child's pipe;
the child runs ``target(job)`` and pickles back ``("done", Outcome)``. With
``backlog_per_child``, while every child is busy, that many jobs per child wait in the
parent and go to the first child that frees (``children.py``); ``free_slots()`` counts
those places too. A supervisor thread
in the parent waits on every pipe plus a wake-up pipe (used to stop it). A pipe that reads
end-of-file means its child died; ``os.waitpid`` then says how, the child's job (if any)
is reported lost, and a new child takes the slot. A periodic sweep of ``waitpid`` catches
the rare death that closes no pipe (a grandchild inherited the child's end of it).

Why ``os.fork`` and not ``multiprocessing.Process``: our children ignore SIGTERM, and
multiprocessing's exit handler terminates (SIGTERM) then joins its children, so a worker
that exits without stopping its pool would hang there; it also swaps the child's stdin and
decides which descriptors the child keeps. Here the child closes exactly the parent's
pipes it inherited, so that it sees end-of-file as soon as the parent closes its pipe or
dies, and leaves through ``os._exit``.

Forking and threads: ``fork()`` copies only the calling thread. A lock another thread held
at that moment stays locked forever in the child, and the child finalizes the objects of
every other thread it left behind (a psycopg2 or MySQL connection being finalized says
goodbye to its server on a socket the parent still uses). Python 3.12+ warns about forking
a multi-threaded process for these reasons. So this pool forks only (1) from the thread
that drives it -- the one that called ``start()``, which also replaces dead children inside
``free_slots()``, ``submit()`` and ``wait_for_free_slot()`` -- after closing that thread's
database connections, and (2) while its own supervisor thread is stopped: the supervisor
is joined before a fork and started afresh after it. The pool never forks with a thread of
its own alive; a worker that runs no other thread forks from a single-threaded process.
The price: a dead child is replaced when the driving thread next calls the pool, not at
once; until then free_slots() does not count it, so nothing waits on it. Callbacks must
not block on the driving thread (see ``Pool``), since replacing a child joins the
supervisor, which runs on_done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import reprlib
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, ClassVar

from djtasks.utils.log import loggable
from djtasks.worker.pools.base import (
    OnDone,
    Pool,
    PoolFull,
    PoolStartError,
    State,
    Target,
    WorkerLost,
    check_member_count,
)
from djtasks.worker.pools.children import Child, Children, Slot, Waiting, send_job
from djtasks.worker.pools.process import fork_child, send_signal
from djtasks.worker.pools.timelimits import TimeLimits

logger = logging.getLogger("djtasks.worker.pools")

TICK = 1.0  # seconds between the supervisor's waitpid sweeps
INIT_RETRY = 1.0  # a child whose on_process_init raised is replaced after this delay, not in a loop


class PreforkPool(Pool):
    """``limit`` forked children, each running one job at a time."""

    name: ClassVar[str] = "prefork"
    supports_hard_kill: ClassVar[bool] = True
    supports_recycling: ClassVar[bool] = True
    in_process: ClassVar[bool] = False

    @property
    def jobs_may_wait(self) -> bool:
        return self._children.backlog_per_child > 0

    def __init__(self, limit: int, target: Target, *,
                 on_process_init: Callable[[], None] | None = None,
                 max_tasks_per_child: int | None = None,
                 max_memory_per_child: int | None = None, backlog_per_child: int = 0) -> None:
        super().__init__(limit, target, on_process_init=on_process_init,
                         max_tasks_per_child=max_tasks_per_child,
                         max_memory_per_child=max_memory_per_child)
        if backlog_per_child < 0:
            raise ValueError(f"backlog_per_child: expected 0 or more, got {backlog_per_child}")
        self._children = Children(limit, max_tasks_per_child, max_memory_per_child, INIT_RETRY,
                                  backlog_per_child)
        self._lock, self._cond = self._children.lock, self._children.cond
        self._control = threading.Lock()  # one at a time: supervisor stop/start, forks, stop()
        self._state = State.NEW
        self._owner: int | None = None
        self._wake_r = self._wake_w = -1
        self._supervisor: threading.Thread | None = None
        self._supervisor_stop = threading.Event()

    def start(self) -> None:
        """Fork the children and wait until each has run on_process_init.

        Raises PoolStartError, with the child's traceback, if on_process_init raises.
        """
        with self._lock:
            if self._state is not State.NEW:
                raise PoolStartError(f"expected a new pool, got a {self._state.value} one")
        self._owner = threading.get_ident()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        try:
            for child in self._children.slots:
                self._spawn(child)
            for child in self._children.slots:
                self._await_ready(child)
        except BaseException:
            self._children.end(kill=True)
            self._close_wake_pipe()
            self._state = State.STOPPED
            raise
        self._state = State.RUNNING
        self._start_supervisor()

    def free_slots(self) -> int:
        self._replace_dead()
        with self._lock:
            return self._room() if self._state is State.RUNNING else 0

    def _room(self) -> int:
        # Under the lock: idle children, then places to wait for one.
        return len(self._children.in_state(Slot.IDLE)) + self._children.backlog_room()

    def submit(self, job: Any, on_done: OnDone) -> None:
        """Send ``job`` to an idle child; raise TypeError if it does not pickle.

        The error names the job briefly: its arguments may be huge, and it goes to the log.
        """
        try:
            data = pickle.dumps(job)
        except RecursionError as exc:
            raise TypeError(f"expected a picklable job, got {_describe(job)}: its arguments "
                            f"are nested too deeply to hand to a pool process") from exc
        except Exception as exc:
            raise TypeError(f"expected a picklable job, got {_describe(job)}: {exc}") from exc
        self._replace_dead()
        with self._lock:
            if self._state is not State.RUNNING:
                raise PoolFull("the pool is not running")
            entry = Waiting(job, data, on_done, self.on_start)
            idle = [child for child in self._children.in_state(Slot.IDLE) if child.conn is not None]
            if idle:
                conn = self._children.assign(idle[0], entry, time.monotonic())
            elif self._children.backlog_room():
                self._children.waiting.append(entry)  # the supervisor sends it on
                return
            else:
                raise PoolFull(f"all {self.limit} processes are busy, and as many jobs as may wait do")
        send_job(conn, data)
        if TimeLimits.of(job):
            self._wake_supervisor()  # it sleeps until the earliest limit it knows of

    def wait_for_free_slot(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._replace_dead()
            with self._lock:
                if self._state is not State.RUNNING:
                    return False
                if self._room():
                    return True
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                self._cond.wait(self._wait_delay(now, deadline))

    def _wait_delay(self, now: float, deadline: float | None) -> float | None:
        delays = [] if deadline is None else [deadline - now]
        if threading.get_ident() == self._owner:  # wake up in time to replace dead children
            delays += [max(c.respawn_at - now, 0.01) for c in self._children.in_state(Slot.DEAD)]
        return min(delays, default=None)

    def stop(self, wait: bool = True) -> None:
        """Warm (``wait``): let running jobs finish, then close the pipes; cold: SIGKILL all.

        A warm stop that a signal handler interrupts leaves the pool stopping, and a
        following stop(wait=False) finishes the job cold.
        """
        with self._lock:
            if self._state in (State.NEW, State.STOPPED):
                self._state = State.STOPPED
                return
            self._state = State.STOPPING
            self._cond.notify_all()
        # Waiting jobs never started: as the worker's reserved messages, they go back, warm
        # stop or cold (their on_done says so, and the worker requeues their messages).
        self._children.give_back_waiting()
        with self._lock:
            if wait:
                self._cond.wait_for(lambda: not self._children.in_state(Slot.BUSY))
        with self._control:
            self._stop_supervisor()
            self._children.end(kill=not wait)
            self._close_wake_pipe()
            with self._lock:
                self._state = State.STOPPED
                self._cond.notify_all()

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pool": self.name,
                "limit": self.limit,
                "state": self._state.value,
                "processes": [child.pid for child in self._children.alive()],
                "running": len(self._children.in_state(Slot.BUSY)),
                "waiting": len(self._children.waiting),
            }

    def kill_job(self, match: Callable[[Any], bool], sig: int) -> bool:
        """Send ``sig`` to the child running the first job ``match`` accepts; True if found.

        The child ignores SIGINT and SIGTERM, so those do nothing; SIGKILL makes the job's
        on_done report it lost, and the child is replaced. A job still waiting for a child
        is taken out and reported lost by ``sig`` at once. ``match`` runs under the pool's
        lock: keep it a plain comparison.
        """
        with self._lock:
            for child in self._children.in_state(Slot.BUSY):
                if child.on_done is not None and match(child.job):
                    send_signal(child.pid, sig)
                    return True
            entry = self._children.take_waiting(match)
        if entry is None:
            return False
        entry.give_back(WorkerLost(signum=sig, cause="stopped before a process took it"))
        return True

    def give_back_waiting(self) -> None:
        self._children.give_back_waiting()

    def waiting_for_member(self, job: Any) -> bool:
        with self._lock:
            return any(entry.job is job for entry in self._children.waiting)

    def member_pid(self, job: Any) -> int:
        """Return the pid of the child running ``job`` (0 if none is)."""
        with self._lock:
            for child in self._children.in_state(Slot.BUSY):
                if child.job is job:
                    return child.pid
        return 0

    # -- resizing (remote control, autoscaler): only the driving thread forks ----------
    def grow(self, n: int = 1) -> None:
        """Fork ``n`` more children; each takes jobs once it reports ready."""
        self._check_resize(n)
        with self._control:
            self._stop_supervisor()
            try:
                with self._lock:
                    for _ in range(n):
                        child = Child()
                        self._children.slots.append(child)
                        self.limit += 1
                        self._respawn(child)
            finally:
                self._start_supervisor()

    def shrink(self, n: int = 1) -> None:
        """End ``n`` children, idle ones at once and busy ones after their job; one stays."""
        self._check_resize(n)
        with self._lock:
            if n > self.limit - 1:
                raise ValueError(f"pool_shrink: expected at most {self.limit - 1} "
                                 f"(one process stays), got {n}")
            order = {Slot.DEAD: 0, Slot.STARTING: 1, Slot.IDLE: 2, Slot.BUSY: 3}
            staying = [c for c in self._children.slots if not c.leaving]
            chosen = sorted(staying, key=lambda c: order[c.state])[:n]
            for child in chosen:
                child.leaving, child.retire = True, "the pool shrinks"
            self.limit -= n
        self._retire_idle([c for c in chosen if c.state is not Slot.BUSY])

    def restart(self) -> None:
        """Replace every child: idle ones now, busy ones once their job is done."""
        with self._lock:
            every = self._children.alive()
            for child in every:
                child.retire = "pool_restart"
        self._retire_idle([c for c in every if c.state is not Slot.BUSY])

    def _check_resize(self, n: int) -> None:
        check_member_count(n, "processes")
        if threading.get_ident() != self._owner or self._state is not State.RUNNING:
            raise RuntimeError("only the running pool's own thread may resize it")

    def _retire_idle(self, children: list[Child]) -> None:
        with self._control:
            self._stop_supervisor()  # it must not wait on a pipe closed under it
            try:
                for child in children:
                    with self._lock:
                        if child.state is Slot.BUSY:  # it took a job meanwhile: ends after it
                            continue
                        conn = child.conn
                    if conn is not None:
                        conn.close()  # the child exits when it reads end-of-file
                    self._children.retire_and_bury(child, child.retire, expected=True)
            finally:
                self._start_supervisor()

    # -- forking -----------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        """Fork a child into ``child``'s slot; it becomes IDLE when it reports ready."""
        inherited: list[int | Connection] = [self._wake_r, self._wake_w]
        inherited += [c.conn for c in self._children.slots if c.conn and not c.conn.closed]
        child.pid, child.conn = fork_child(self.target, self.on_process_init, inherited)
        child.state, child.job, child.on_done, child.tasks = Slot.STARTING, None, None, 0
        child.retire = ""

    def _await_ready(self, child: Child) -> None:
        assert child.conn is not None, "_spawn gave the child its connection"
        try:
            kind, payload = pickle.loads(child.conn.recv_bytes())  # noqa: S301 - our own child wrote it
        except (EOFError, OSError):
            lost = self._children.retire_and_bury(child, expected=True)
            raise PoolStartError(f"a pool process died before it was ready: {lost}") from None
        if kind == "init-failed":
            raise PoolStartError(f"on_process_init raised in process {child.pid}:\n{payload}")
        child.state = Slot.IDLE

    def _replace_dead(self) -> None:
        """Fork replacements for dead children: only the driving thread does (module docstring)."""
        if threading.get_ident() != self._owner:
            return
        now = time.monotonic()
        with self._lock:
            # A slot that pool_shrink took away is dropped once its process is gone.
            self._children.slots[:] = [c for c in self._children.slots
                                       if not (c.leaving and c.state is Slot.DEAD)]
            due = [c for c in self._children.in_state(Slot.DEAD) if c.respawn_at <= now]
            if self._state is not State.RUNNING or not due:
                return
        with self._control:
            self._stop_supervisor()
            try:
                with self._lock:
                    for child in due:
                        if self._state is State.RUNNING and child.state is Slot.DEAD:
                            self._respawn(child)
            finally:
                self._start_supervisor()

    def _respawn(self, child: Child) -> None:
        try:
            self._spawn(child)
        except OSError:
            logger.exception("Could not fork a pool process; retrying in %ss", INIT_RETRY)
            child.respawn_at = time.monotonic() + INIT_RETRY

    # -- the supervisor thread ---------------------------------------------------------
    def _start_supervisor(self) -> None:
        self._supervisor_stop = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, args=(self._supervisor_stop,),
            name="djtasks-prefork-supervisor", daemon=True)
        self._supervisor.start()

    def _stop_supervisor(self) -> None:
        if self._supervisor is None:
            return
        self._supervisor_stop.set()
        self._wake_supervisor()
        self._supervisor.join()
        self._supervisor = None

    def _wake_supervisor(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _supervise(self, stop: threading.Event) -> None:
        swept = time.monotonic()
        while not stop.is_set():
            try:
                self._children.watch(self._wake_r, self._children.wait_time(TICK))
                self._children.enforce_time_limits(time.monotonic())
                if time.monotonic() - swept >= TICK:
                    self._children.sweep()
                    swept = time.monotonic()
            except Exception:
                logger.exception("The prefork supervisor failed; it carries on")

    def _close_wake_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1


def _describe(job: Any) -> str:
    label = getattr(job, "label", None)
    return label if isinstance(label, str) else loggable(reprlib.repr(job))
