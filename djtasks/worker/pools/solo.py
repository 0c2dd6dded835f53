"""The solo pool: each job runs inline, in the thread that submits it (processes layer)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from djtasks.exceptions import SoftTimeLimitExceeded
from djtasks.worker.pools.base import (
    OnDone,
    Outcome,
    Pool,
    PoolFull,
    PoolStartError,
    State,
    Target,
    TargetFailure,
    Ticket,
    WorkerLost,
    deliver,
)
from djtasks.worker.pools.interrupt import soft_limit
from djtasks.worker.pools.timelimits import TimeLimits, Timeout

logger = logging.getLogger("djtasks.worker.pools")

ABANDONED = "abandoned by a cold stop: the solo pool cannot kill the thread running the job"


class SoloPool(Pool):
    """One job at a time, run by submit() itself; on_done fires before submit() returns.

    ``limit`` is ignored (one slot), as Celery's solo pool ignores ``--concurrency``.
    A cold stop, which can only come from another thread or a signal handler while a job
    runs, reports that job lost at once; when the job returns later, its outcome is dropped.

    Time limits: past its soft limit, SoftTimeLimitExceeded is raised inside the job (by
    SIGALRM in the main thread, the worker's case; by a timer thread elsewhere). A hard
    limit cannot be enforced: the job is the worker's own thread.
    """

    name: ClassVar[str] = "solo"
    supports_hard_kill: ClassVar[bool] = False
    runs_in_submit: ClassVar[bool] = True

    def __init__(self, limit: int, target: Target, *,
                 on_process_init: Callable[[], None] | None = None, **options: int | None) -> None:
        super().__init__(limit, target, on_process_init=on_process_init, **options)
        self.limit = 1
        self._cond = threading.Condition(threading.Lock())
        self._state = State.NEW
        self._current: Ticket | None = None
        self._runner: int | None = None

    def start(self) -> None:
        with self._cond:
            if self._state is not State.NEW:
                raise PoolStartError(f"expected a new pool, got a {self._state.value} one")
            self._state = State.RUNNING

    def free_slots(self) -> int:
        with self._cond:
            return self._free()

    def _free(self) -> int:
        return int(self._state is State.RUNNING and self._current is None)

    def submit(self, job: Any, on_done: OnDone) -> None:
        ticket = Ticket(job, on_done)
        with self._cond:
            if not self._free():
                raise PoolFull("the solo pool is running a job or is not running")
            self._current, self._runner = ticket, threading.get_ident()
        try:
            try:
                outcome = self._run(job)
            except Exception as exc:
                outcome = Outcome(error=TargetFailure.from_exception(exc))
            except BaseException as exc:
                # KeyboardInterrupt or SystemExit from a signal handler: the worker's own
                # control flow, which must go on unwinding; the job did not complete.
                self._settle(ticket, Outcome(lost=WorkerLost(cause=f"interrupted by {exc!r}")))
                raise
            self._settle(ticket, outcome)
        finally:
            with self._cond:
                self._current = self._runner = None
                if self._state is State.STOPPING:
                    self._state = State.STOPPED
                self._cond.notify_all()

    def _run(self, job: Any) -> Outcome:
        soft = TimeLimits.of(job).soft
        returned, value = False, None
        try:
            with soft_limit(job, soft) as fired:
                value, returned = self.target(job), True
        except SoftTimeLimitExceeded:
            if not returned:  # raised outside the task's body, which would have caught it
                raise
            # It landed as the job returned: the job is over, its value stands.
        if soft is not None and fired.soft:
            logger.warning("Soft time limit (%gs) exceeded for %s", soft, getattr(job, "label", job))
            return Outcome(value=value, timeout=Timeout(soft=True, limit=soft))
        return Outcome(value=value)

    def _settle(self, ticket: Ticket, outcome: Outcome) -> None:
        with self._cond:
            first = ticket.settle()
        if first:
            deliver(ticket.on_done, ticket.job, outcome)

    def wait_for_free_slot(self, timeout: float | None) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._state is not State.RUNNING or self._free(), timeout)
            return bool(self._free())

    def stop(self, wait: bool = True) -> None:
        with self._cond:
            if self._state in (State.NEW, State.STOPPED):
                self._state = State.STOPPED
                return
            self._state = State.STOPPING
            self._cond.notify_all()
            if wait and self._runner == threading.get_ident():
                # Called from a signal handler on top of the running job: waiting would
                # wait for ourselves. The job finishes when the handler returns, then
                # submit() completes the stop.
                return
            if wait:
                self._cond.wait_for(lambda: self._current is None)
            ticket = self._current
            abandoned = ticket is not None and ticket.settle()
            self._state = State.STOPPED
            self._cond.notify_all()
        if abandoned and ticket is not None:  # abandoned implies a ticket; said for mypy
            deliver(ticket.on_done, ticket.job, Outcome(lost=WorkerLost(cause=ABANDONED)))

    def info(self) -> dict[str, Any]:
        with self._cond:
            return {"pool": self.name, "limit": self.limit, "state": self._state.value,
                    "running": int(self._current is not None)}
