"""One child of the prefork pool: forking it, the loop it runs, reaping it (processes layer).

Messages on the pipe, each one pickle: parent to child, a job; child to parent,
``("ready", None)`` or ``("init-failed", traceback)`` once after on_process_init, then
``("done", (Outcome, rss))`` per job, ``rss`` the child's resident memory in KiB after it.

A job's soft time limit reaches the child as SIGUSR1 (``interrupt.SOFT_LIMIT_SIGNAL``),
which raises SoftTimeLimitExceeded inside the job; the hard limit is the parent's SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe
from typing import NoReturn

from django.db import connections

from djtasks.backends.fork_safety import DATABASE_WRITES
from djtasks.worker.pools.base import Outcome, Target, TargetFailure
from djtasks.worker.pools.interrupt import install_soft_limit_handler, run_armed

logger = logging.getLogger("djtasks.worker.pools")

EXIT_GRACE = 5.0  # a child whose pipe closed gets this long to exit before SIGKILL


def fork_child(target: Target, on_process_init: Callable[[], None] | None,
               inherited: list[int | Connection]) -> tuple[int, Connection]:
    """Fork a child that serves ``target``; return its pid and the parent's end of its pipe.

    ``inherited`` lists the parent's descriptors the child must close (other children's
    pipes, the wake-up pipe): holding them, it would hide the parent's death from its
    siblings and from itself.
    """
    parent_end, child_end = Pipe()
    connections.close_all()  # the child must not share our database sockets; it reconnects
    flush_std_streams()  # or the child would write our buffered output a second time
    try:
        with DATABASE_WRITES.forking():  # no SQLite lock of another thread's copied into it
            pid = os.fork()
    except OSError:
        parent_end.close()
        child_end.close()
        raise
    if pid == 0:
        _child_main(child_end, target, on_process_init, [*inherited, parent_end])
    child_end.close()
    return pid, parent_end


def reap(pid: int) -> int | None:
    """Wait for child ``pid`` to exit; return its wait status, None if it was reaped elsewhere.

    A child whose pipe closed is exiting, so this is short; one still alive after
    EXIT_GRACE (a task that closed our pipe, a stuck on_process_init) is killed.
    """
    deadline = time.monotonic() + EXIT_GRACE
    delay = 0.0005
    try:
        while True:
            reaped, status = os.waitpid(pid, os.WNOHANG)
            if reaped:
                return status
            if time.monotonic() >= deadline:
                send_signal(pid, signal.SIGKILL)
                return os.waitpid(pid, 0)[1]
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    except ChildProcessError:
        return None


def send_signal(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``; a process already gone is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def flush_std_streams() -> None:
    """Flush sys.stdout and sys.stderr, whatever they are."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


# -- in the child ----------------------------------------------------------------------
def _child_main(conn: Connection, target: Target, on_process_init: Callable[[], None] | None,
                inherited: list[int | Connection]) -> NoReturn:
    """Set up a fresh child, then serve jobs until the parent closes the pipe.

    The child always leaves through os._exit: its interpreter holds copies of the parent's
    objects (database and broker connections, atexit handlers), and none of their
    finalizers may run here, where they would write on sockets the parent still uses.
    """
    def serve() -> int:
        if not _initialize(conn, on_process_init):
            return 1
        _serve(conn, target)
        return 0

    run_in_child(serve, inherited)


def run_in_child(body: Callable[[], int], inherited: list[int | Connection]) -> NoReturn:
    """In a new child: close what is the parent's, reset signals, run ``body``, exit with its code.

    Any error is printed and exits 1. The way out is os._exit, never a return: see
    ``_child_main``.
    """
    code = 1
    try:
        for item in inherited:
            with contextlib.suppress(OSError):
                if isinstance(item, Connection):
                    item.close()
                else:
                    os.close(item)
        reset_child_signals()
        code = body()
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        flush_std_streams()
        os._exit(code)


def reset_child_signals() -> None:
    """In a new child: the parent's handlers off, SIGINT and SIGTERM ignored, soft limits on."""
    # The parent's Python handlers (the worker's shutdown handlers) and its wake-up fd
    # belong to the parent.
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
    # The parent decides when children stop: a Ctrl+C reaching the whole process group, or
    # a service manager's SIGTERM to every process of the service, must not kill running
    # jobs in the middle of a warm shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    install_soft_limit_handler()


def _initialize(conn: Connection, on_process_init: Callable[[], None] | None) -> bool:
    try:
        if on_process_init is not None:
            on_process_init()
    except BaseException:
        conn.send_bytes(pickle.dumps(("init-failed", traceback.format_exc())))
        return False
    conn.send_bytes(pickle.dumps(("ready", None)))
    return True


def _serve(conn: Connection, target: Target) -> None:
    # A target may have work left over from its last job that it must finish before this
    # process sits idle (the executor: reading the reply of a result write it did not wait
    # for). It gets the chance only when no next job is waiting already.
    idle = getattr(target, "idle", None)
    while True:
        try:
            if idle is not None and not conn.poll():
                _call_quietly(idle)
            data = conn.recv_bytes()
        except EOFError:  # the parent closed our pipe (warm stop) or died
            if idle is not None:
                _call_quietly(idle)
            return
        conn.send_bytes(_dump_outcome(_run(target, data), resident_kib()))
        flush_std_streams()


def _call_quietly(hook: Callable[[], object]) -> None:
    try:
        hook()
    except Exception:  # the hook's own failure must not end this pool process
        logger.exception("A pool process's idle hook failed")


def _run(target: Target, data: bytes) -> Outcome:
    try:
        job = pickle.loads(data)  # noqa: S301 - our own parent wrote it
    except BaseException as exc:
        return Outcome(error=TargetFailure.from_exception(exc, "the job could not be unpickled"))
    return run_armed(target, job)


def _dump_outcome(outcome: Outcome, rss: int | None) -> bytes:
    try:
        return pickle.dumps(("done", (outcome, rss)))
    except Exception as exc:
        context = "the outcome could not be pickled"
        failure = Outcome(error=TargetFailure.from_exception(exc, context), timeout=outcome.timeout)
        return pickle.dumps(("done", (failure, rss)))


#: This process's /proc/self/statm, opened once per process (pid, descriptor): /proc/self
#: is resolved when the file is opened, so a forked child must not read its parent's.
_statm: tuple[int, int] | None = None
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def resident_kib() -> int | None:
    """Return this process's resident memory in KiB (None where it cannot be read).

    Read after every job, so cheaply: one pread of /proc/self/statm on a descriptor kept
    open (about 1.5 µs, against 19 µs to open and scan /proc/self/status each time).
    Elsewhere the peak from getrusage, which only grows, so a child there is replaced at
    the first task after it passed the limit.
    """
    global _statm
    try:
        if _statm is None or _statm[0] != os.getpid():
            _statm = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _PAGE_KIB
    except (OSError, ValueError, IndexError):
        pass
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS counts bytes
