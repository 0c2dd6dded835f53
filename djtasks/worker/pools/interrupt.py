"""Raising SoftTimeLimitExceeded inside a running job: by signal, or into a thread (processes layer).

Two ways, for the two kinds of pool member:

- a process's main thread (a prefork child, the solo pool in the worker's main thread)
  gets a signal whose handler raises; a signal also interrupts a blocking call such as
  ``time.sleep``, so the task sees the exception at once;
- any other thread (the threads pool) gets the exception set asynchronously with
  ``PyThreadState_SetAsyncExc``; it is raised when the thread next runs Python code, so a
  thread blocked inside one long C call sees it only when that call returns.

Both raise only while a job is armed, never in the pool's own loop between jobs.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from djtasks.exceptions import SoftTimeLimitExceeded
from djtasks.worker.pools.base import Outcome, Target, TargetFailure, call_target

#: What the prefork parent sends a child whose job ran past its soft limit (Celery's too).
SOFT_LIMIT_SIGNAL = signal.SIGUSR1


class _Armed:
    """The job running in this process's main thread, if any: the signal handler's guard."""

    job: Any = None
    running = False
    fired = False  # set when the signal raised into the armed job


_armed = _Armed()


def _raise_soft_limit(signum: int, frame: FrameType | None) -> None:
    if _armed.running:
        _armed.fired = True
        raise SoftTimeLimitExceeded(_message(_armed.job))


def install_soft_limit_handler(signum: int = SOFT_LIMIT_SIGNAL) -> Any:
    """Make ``signum`` raise SoftTimeLimitExceeded in an armed job; return the old handler."""
    return signal.signal(signum, _raise_soft_limit)


def run_armed(target: Target, job: Any) -> Outcome:
    """Run ``target(job)`` in this main thread with the soft-limit signal armed.

    The signal can land just after ``target`` returned: the exception is then caught here
    and the job's own outcome kept, since the job is over.
    """
    outcome = None
    try:
        try:
            _armed.job, _armed.running = job, True
            outcome = call_target(target, job)
        finally:
            _armed.running, _armed.job = False, None
    except SoftTimeLimitExceeded as exc:
        if outcome is None:
            outcome = Outcome(error=TargetFailure.from_exception(exc))
    return outcome


class Fired:
    """Whether a soft limit raised its exception (read after the block)."""

    soft = False


@contextlib.contextmanager
def soft_limit(job: Any, seconds: float | None) -> Iterator[Fired]:
    """Raise SoftTimeLimitExceeded in this thread, inside the block, after ``seconds``.

    In the main thread by SIGALRM (``setitimer``; the previous handler is put back after),
    which also interrupts a blocking call; in another thread by a timer raising into it.
    The exception may land just after the block ended: callers that must tell catch it.
    The value yielded says afterwards whether the limit fired.
    """
    fired = Fired()
    if seconds is None:
        yield fired
    elif threading.current_thread() is threading.main_thread():
        previous = install_soft_limit_handler(signal.SIGALRM)
        _armed.job, _armed.running, _armed.fired = job, True, False
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield fired
        finally:
            _armed.running, _armed.job = False, None
            fired.soft = _armed.fired
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    else:
        lock, ident, armed = threading.Lock(), threading.get_ident(), [True]

        def fire() -> None:
            with lock:
                if armed[0]:
                    fired.soft = raise_in_thread(ident)

        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        try:
            yield fired
        finally:
            with lock:
                armed[0] = False
            timer.cancel()
            clear_in_thread(ident)


def raise_in_thread(thread_id: int) -> bool:
    """Have thread ``thread_id`` raise SoftTimeLimitExceeded when it next runs Python code."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(SoftTimeLimitExceeded))
    return done == 1


def clear_in_thread(thread_id: int) -> None:
    """Cancel an exception set by raise_in_thread that the thread has not raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


def run_in_thread_armed(target: Target, job: Any, disarm: Any) -> Outcome:
    """Run ``target(job)`` in this thread; ``disarm()`` makes sure nothing more is sent.

    ``disarm`` runs under the lock the sender holds while raising, so once it returned no
    new exception comes; one set just before is cancelled, or caught here if it was
    raised already. At most one is ever sent per job.
    """
    ident = threading.get_ident()
    outcome = None
    try:
        outcome = call_target(target, job)
        disarm()
        clear_in_thread(ident)
    except SoftTimeLimitExceeded as exc:
        disarm()
        clear_in_thread(ident)
        if outcome is None:
            outcome = Outcome(error=TargetFailure.from_exception(exc))
    return outcome


def _message(job: Any) -> str:
    limit = getattr(job, "soft_time_limit", None)
    return f"soft time limit ({limit:g}s) exceeded" if isinstance(limit, int | float) else \
        "soft time limit exceeded"
