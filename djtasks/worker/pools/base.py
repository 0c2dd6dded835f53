"""The pool interface, and the values a job's run comes back as (processes layer).

The worker's main process owns the broker connection and the acks; a pool only runs
``target(job)`` in one of its members (a child process, a thread, or the calling thread)
and reports what came of it through ``on_done(job, outcome)``, exactly once per job.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from djtasks.exceptions import DjtasksError, ImproperlyConfigured, WorkerLostError
from djtasks.worker.pools.timelimits import Timeout

logger = logging.getLogger("djtasks.worker.pools")

Target = Callable[[Any], Any]


class PoolFull(DjtasksError):  # noqa: N818 - Celery-style name other modules code against
    """submit() found no free slot (the pool is busy, not started, or stopping)."""


class PoolStartError(DjtasksError):
    """A pool member could not start, for instance because on_process_init raised."""


@dataclass(frozen=True)
class WorkerLost:
    """The pool member running a job went away before the job returned."""

    pid: int | None = None
    exitcode: int | None = None
    signum: int | None = None
    cause: str = ""

    @classmethod
    def from_wait_status(cls, pid: int, status: int | None, cause: str = "") -> WorkerLost:
        """Describe a child process from its ``os.waitpid`` status (None: status unknown)."""
        if status is None:
            return cls(pid, cause=cause)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            return cls(pid, signum=-code, cause=cause)
        return cls(pid, exitcode=code, cause=cause)

    def __str__(self) -> str:
        parts = []
        if self.pid is not None:
            if self.signum is not None:
                parts.append(f"process {self.pid} exited with signal {self.signum} "
                             f"({_signal_name(self.signum)})")
            elif self.exitcode is not None:
                parts.append(f"process {self.pid} exited with code {self.exitcode}")
            else:
                parts.append(f"process {self.pid} exited")
        if self.cause:
            parts.append(self.cause)
        return ": ".join(parts) or "the pool member was lost"

    def as_error(self) -> WorkerLostError:
        """Return the exception a result records for this loss."""
        return WorkerLostError(f"Worker exited prematurely: {self}.")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unknown signal"


@dataclass(frozen=True)
class TargetFailure:
    """target raised instead of returning: the exception as text, since it may not pickle."""

    exc_repr: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, context: str = "") -> TargetFailure:
        """Capture ``exc`` with its traceback; ``context`` prefixes the repr."""
        text = repr(exc)
        return cls(f"{context}: {text}" if context else text,
                   "".join(traceback.format_exception(exc)))

    def __str__(self) -> str:
        return self.exc_repr


@dataclass(frozen=True)
class Outcome:
    """What came of one job: target's return value, target's own failure, or a lost member."""

    value: Any = None
    error: TargetFailure | None = None
    lost: WorkerLost | None = None
    #: A time limit the job ran past: soft (raised inside it), or hard (its member killed).
    timeout: Timeout | None = None
    #: False: no member ever took the job (it waited, and a stop or a terminate took it
    #: back); ``lost`` says why. Its message can go back to the queue untouched.
    started: bool = True

    def __post_init__(self) -> None:
        if self.error is not None and self.lost is not None:
            raise ValueError("expected an error or a lost worker, got both")
        if self.value is not None and (self.error is not None or self.lost is not None):
            raise ValueError(f"expected no value beside an error or a lost worker, got {self.value!r}")

    @property
    def ok(self) -> bool:
        """True when target returned (its value may still describe a failed task)."""
        return self.error is None and self.lost is None


OnDone = Callable[[Any, Outcome], None]


class Pool(ABC):
    """Run ``target(job)`` in pool members, at most ``limit`` jobs at a time.

    Contract shared by every pool:

    - ``on_done(job, outcome)`` runs exactly once per submitted job, from any thread. It
      must be quick and must not wait for the thread that drives the pool (the one calling
      ``submit``/``stop``): hand the outcome over, e.g. through a queue.
    - An exception from ``on_done`` is logged; the pool carries on.
    - When ``stop()`` returns, every submitted job has had its ``on_done`` called (or the
      call is under way in another thread).
    - A job may carry ``soft_time_limit`` and ``time_limit`` (seconds; see timelimits.py).
      Past the soft one, SoftTimeLimitExceeded is raised inside the job, and its outcome
      says so (``Outcome.timeout``); past the hard one, a pool with ``supports_hard_kill``
      kills the member, and the job comes back lost with a hard ``Outcome.timeout``.
    - ``on_process_init`` runs in each new process the pool forks; pools that create no
      process (threads, solo) never call it, as Celery sends ``worker_process_init`` only
      from prefork children.
    """

    name: ClassVar[str]
    supports_hard_kill: ClassVar[bool] = False
    #: Whether the pool replaces its members after max_tasks_per_child / max_memory_per_child.
    supports_recycling: ClassVar[bool] = False
    #: Whether members run inside the worker's own process (threads, solo): a task that
    #: kills its member kills the worker, so an early ack must reach the broker first.
    in_process: ClassVar[bool] = True
    #: Whether submit() itself runs the job and returns once it is over (solo): what must
    #: be said while the job runs (the task-started event, inspect stats' totals) is said
    #: before submit() then, not after it.
    runs_in_submit: ClassVar[bool] = False

    @property
    def jobs_may_wait(self) -> bool:
        """Whether submit() may accept a job that no member takes at once (see on_start)."""
        return False

    def __init__(self, limit: int, target: Target, *,
                 on_process_init: Callable[[], None] | None = None,
                 max_tasks_per_child: int | None = None,
                 max_memory_per_child: int | None = None) -> None:
        if limit < 1:
            raise ImproperlyConfigured(f"pool limit: expected at least 1, got {limit}")
        for key, value in (("max_tasks_per_child", max_tasks_per_child),
                           ("max_memory_per_child", max_memory_per_child)):
            if value is not None and value < 1:
                raise ImproperlyConfigured(f"{key}: expected at least 1, got {value}")
        self.limit = limit
        self.target = target
        self.on_process_init = on_process_init
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        #: Called (from a pool thread) when a member takes a job that had to wait for one,
        #: after submit() returned: the worker acknowledges an early-ack message then.
        self.on_start: Callable[[Any], None] | None = None

    @abstractmethod
    def start(self) -> None:
        """Create the members; after this, submit() accepts jobs."""

    @abstractmethod
    def free_slots(self) -> int:
        """Return how many more jobs submit() would accept right now."""

    @abstractmethod
    def submit(self, job: Any, on_done: OnDone) -> None:
        """Run ``target(job)`` in a free member; raise PoolFull if none is free."""

    @abstractmethod
    def wait_for_free_slot(self, timeout: float | None) -> bool:
        """Block until a slot is free (True), or timeout / the pool is stopping (False)."""

    @abstractmethod
    def stop(self, wait: bool = True) -> None:
        """Stop: warm (``wait``: finish running jobs) or cold (abandon them as lost)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Describe the pool for the banner and ``inspect``."""

    def kill_job(self, match: Callable[[Any], bool], sig: int) -> bool:
        """Send ``sig`` to the member running the first job ``match`` accepts.

        Only pools with ``supports_hard_kill`` can; the worker checks the flag at start-up.
        """
        raise NotImplementedError(f"the {self.name} pool cannot kill a running job")

    def grow(self, n: int = 1) -> None:
        """Add ``n`` members (remote control ``pool_grow``, the autoscaler)."""
        raise NotImplementedError(f"the {self.name} pool cannot grow")

    def shrink(self, n: int = 1) -> None:
        """Remove ``n`` members, idle ones first; a busy one leaves after its job, never before."""
        raise NotImplementedError(f"the {self.name} pool cannot shrink")

    def restart(self) -> None:
        """Replace every member, each once its current job is done (``pool_restart``)."""
        raise NotImplementedError(f"the {self.name} pool cannot restart its members")

    def member_pid(self, job: Any) -> int:
        """Return the pid of the process running ``job`` (in-process pools: this one)."""
        return os.getpid()

    def waiting_for_member(self, job: Any) -> bool:
        """True while ``job`` was accepted but no member runs it yet (Celery's "reserved")."""
        return False

    def give_back_waiting(self) -> None:  # noqa: B027 - pools whose jobs never wait have none
        """Report every job still waiting for a member as never started (a warm stop's first step)."""


def check_member_count(n: object, members: str) -> None:
    """Refuse a pool_grow/pool_shrink count that is not a whole number of at least 1."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"expected a number of {members} of at least 1, got {n!r}")


class State(enum.Enum):
    """Life of a pool: jobs are accepted only while RUNNING."""

    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def call_target(target: Target, job: Any) -> Outcome:
    """Run ``target(job)``; whatever it raises becomes an error outcome, so no member dies of it.

    BaseException too: in a thread or a child, even SystemExit must not end the member.
    """
    try:
        return Outcome(value=target(job))
    except BaseException as exc:
        return Outcome(error=TargetFailure.from_exception(exc))


def deliver(on_done: OnDone, job: Any, outcome: Outcome) -> None:
    """Call ``on_done``; its failure is logged, never allowed to kill a pool thread."""
    try:
        on_done(job, outcome)
    except Exception:
        logger.exception("on_done failed for a job of the pool; the pool carries on")


class Ticket:
    """One job handed to an in-process pool; settle() lets exactly one party report it.

    The member that ran the job and a cold stop that abandons it race to settle; the
    winner calls on_done. Callers hold the pool's lock.
    """

    __slots__ = ("job", "on_done", "settled")

    def __init__(self, job: Any, on_done: OnDone) -> None:
        self.job = job
        self.on_done = on_done
        self.settled = False

    def settle(self) -> bool:
        """Return True the first time only."""
        first, self.settled = not self.settled, True
        return first
