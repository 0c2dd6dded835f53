"""Behaviour of the execution pools, written once and run over prefork, threads and solo."""

from __future__ import annotations

import atexit
import faulthandler
import functools
import logging
import os
import pickle
import resource
import signal
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import pytest

from djtasks.exceptions import ImproperlyConfigured, WorkerLostError
from djtasks.worker.pools import (
    POOLS,
    Outcome,
    Pool,
    PoolFull,
    PoolStartError,
    PreforkPool,
    WorkerLost,
    get_pool_class,
    prefork,
)
from djtasks.worker.pools import process as process_pool

WAIT = 10.0  # seconds a wait-until may take before the test fails instead of hanging
ALL_POOLS = sorted(POOLS)


# -- targets: module-level, so that prefork children inherit them --------------------
def square(job: int) -> int:
    return job * job


def explode_on_boom(job: str) -> str:
    if job == "boom":
        raise ValueError("boom")
    return job


def gated(job: tuple[str, str, Any]) -> Any:
    """Say "started", then block until the test opens the gate, then return the value."""
    folder, name, value = job
    Path(folder, f"{name}.started").touch()
    wait_until(Path(folder, f"{name}.open").exists, timeout=30)
    return value


def dispatch(job: tuple[str, Any]) -> Any:
    """One target for prefork tests that need several behaviours from the same children."""
    kind, arg = job
    if kind == "pid":
        return os.getpid()
    if kind == "gated":
        return gated(arg)
    if kind == "exit":
        os._exit(arg)
    if kind == "signal":  # without a core file or the faulthandler's dump on the test's stderr
        faulthandler.disable()
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        os.kill(os.getpid(), arg)
    if kind == "unpicklable":
        return lambda: None
    return arg


def record_pid(folder: Path) -> None:
    Path(folder, f"init-{os.getpid()}").touch()


def init_unless_blocked(folder: Path) -> None:
    if Path(folder, "block").exists():
        raise RuntimeError("blocked")


def fail_init(folder: Path) -> None:
    record_pid(folder)
    raise RuntimeError("no database today")


def write_marker_outside(folder: Path, parent: int) -> None:
    if os.getpid() != parent:
        Path(folder, f"atexit-{os.getpid()}").touch()


# -- helpers ---------------------------------------------------------------------------
def wait_until(predicate: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


class Recorder:
    """An on_done that records every call, safe from any thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Outcome]] = []
        self._cond = threading.Condition()

    def __call__(self, job: Any, outcome: Outcome) -> None:
        with self._cond:
            self.calls.append((job, outcome))
            self._cond.notify_all()

    def wait_for(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.calls) >= count, WAIT)

    def outcome(self, job: Any) -> Outcome:
        """Wait for ``job``'s one outcome and return it."""
        with self._cond:
            self._cond.wait_for(lambda: any(j == job for j, _ in self.calls), WAIT)
            found = [outcome for j, outcome in self.calls if j == job]
        assert len(found) == 1, f"expected one on_done for {job!r}, got {found}"
        return found[0]


class Gates:
    """Jobs for ``gated``: each waits for its gate; every gate opens at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: list[str] = []

    def job(self, name: str, value: Any = None) -> tuple[str, str, Any]:
        self.names.append(name)
        return (str(self.folder), name, value)

    def wait_started(self, name: str) -> None:
        assert wait_until(Path(self.folder, f"{name}.started").exists)

    def open(self, name: str) -> None:
        Path(self.folder, f"{name}.open").touch()

    def open_all(self) -> None:
        for name in self.names:
            self.open(name)


@pytest.fixture
def gates(tmp_path: Path) -> Any:
    gates = Gates(tmp_path)
    yield gates
    gates.open_all()


@pytest.fixture
def make_pool(gates: Gates) -> Any:
    """Build and start pools; stop whatever a test left running (cold), then open the gates."""
    pools: list[Pool] = []

    def make(kind: str, target: Any, limit: int = 2, **kwargs: Any) -> Pool:
        pool = POOLS[kind](limit, target, **kwargs)
        pools.append(pool)
        pool.start()
        return pool

    yield make
    for pool in pools:
        pool.stop(wait=False)


def submit_in_background(pool: Pool, job: Any, on_done: Any) -> threading.Thread | None:
    """Submit; the solo pool runs the job inside submit(), so do that in a thread."""
    if pool.name != "solo":
        pool.submit(job, on_done)
        return None
    thread = threading.Thread(target=pool.submit, args=(job, on_done))
    thread.start()
    return thread


def reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("djtasks-")]


# -- every pool ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_POOLS)
def test_runs_many_jobs_within_the_free_slots(kind: str, make_pool: Any) -> None:
    pool = make_pool(kind, square, limit=2)
    done = Recorder()
    for number in range(200):
        if pool.free_slots() == 0:
            assert pool.wait_for_free_slot(timeout=WAIT)
        pool.submit(number, done)
    pool.stop(wait=True)

    assert Counter(job for job, _ in done.calls) == Counter(range(200))  # each exactly once
    assert all(outcome.ok and outcome.value == job * job for job, outcome in done.calls)


@pytest.mark.parametrize("kind", ALL_POOLS)
def test_target_raising_is_an_error_outcome_and_the_pool_carries_on(kind: str,
                                                                    make_pool: Any) -> None:
    pool = make_pool(kind, explode_on_boom, limit=1)
    members = pool.info().get("processes")
    done = Recorder()

    pool.submit("boom", done)
    error = done.outcome("boom").error
    assert pool.wait_for_free_slot(timeout=WAIT)
    pool.submit("fine", done)

    assert error.exc_repr == "ValueError('boom')"
    assert "Traceback" in error.traceback
    assert "explode_on_boom" in error.traceback
    assert done.outcome("fine") == Outcome(value="fine")
    assert pool.info().get("processes") == members


@pytest.mark.parametrize("kind", ALL_POOLS)
def test_a_failing_on_done_is_logged_and_the_pool_carries_on(kind: str, make_pool: Any,
                                                             caplog: Any) -> None:
    pool = make_pool(kind, square, limit=1)
    done = Recorder()

    def broken(job: Any, outcome: Outcome) -> None:
        raise RuntimeError("consumer bug")

    with caplog.at_level(logging.ERROR, logger="djtasks.worker.pools"):
        pool.submit(3, broken)
        assert pool.wait_for_free_slot(timeout=WAIT)
    pool.submit(4, done)

    assert done.outcome(4).value == 16
    assert any("on_done failed" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("kind", ["prefork", "threads"])
def test_a_full_pool_refuses_jobs_until_a_slot_frees(kind: str, make_pool: Any,
                                                     gates: Gates) -> None:
    pool = make_pool(kind, gated, limit=2)
    done = Recorder()
    pool.submit(gates.job("a", 1), done)
    pool.submit(gates.job("b", 2), done)

    assert pool.free_slots() == 0
    with pytest.raises(PoolFull):
        pool.submit(gates.job("c", 3), done)
    assert not pool.wait_for_free_slot(timeout=0.01)
    gates.open("a")
    assert pool.wait_for_free_slot(timeout=WAIT)
    assert [job[1] for job, _ in done.calls] == ["a"]  # on_done came before the free slot
    assert pool.free_slots() == 1


def test_solo_runs_the_job_inside_submit(make_pool: Any) -> None:
    pool = make_pool("solo", square, limit=8)
    done = Recorder()

    assert pool.free_slots() == 1
    pool.submit(5, done)

    assert done.calls == [(5, Outcome(value=25))]
    assert pool.info() == {"pool": "solo", "limit": 1, "state": "running", "running": 0}


@pytest.mark.parametrize("kind", ALL_POOLS)
def test_warm_stop_lets_the_running_job_finish(kind: str, make_pool: Any, gates: Gates) -> None:
    pool = make_pool(kind, gated, limit=2)
    done = Recorder()
    submitter = submit_in_background(pool, gates.job("slow", "finished"), done)
    gates.wait_started("slow")

    stopper = threading.Thread(target=pool.stop, kwargs={"wait": True})
    stopper.start()
    assert wait_until(lambda: pool.info()["state"] == "stopping")
    assert pool.free_slots() == 0
    assert not done.calls
    gates.open("slow")
    stopper.join(WAIT)

    assert not stopper.is_alive()
    assert done.calls == [(gates.job("slow", "finished"), Outcome(value="finished"))]
    assert pool.info()["state"] == "stopped"
    assert not pool.wait_for_free_slot(timeout=0)
    with pytest.raises(PoolFull):
        pool.submit(gates.job("late"), done)
    if submitter is not None:
        submitter.join(WAIT)


@pytest.mark.parametrize("kind", ["threads", "solo"])
def test_cold_stop_abandons_a_running_thread_as_lost(kind: str, make_pool: Any,
                                                     gates: Gates) -> None:
    # A thread cannot be killed: the job is reported lost at once and left to run; when it
    # returns, its outcome is dropped, so on_done still fires exactly once.
    pool = make_pool(kind, gated, limit=2)
    done = Recorder()
    job = gates.job("stuck", "too late")
    submitter = submit_in_background(pool, job, done)
    gates.wait_started("stuck")

    pool.stop(wait=False)

    lost = done.outcome(job).lost
    assert lost.pid is None
    assert "cannot kill" in str(lost) or "cannot be killed" in str(lost)
    gates.open("stuck")
    if submitter is not None:
        submitter.join(WAIT)
    assert wait_until(lambda: not pool_threads())
    assert len(done.calls) == 1


def test_prefork_cold_stop_kills_the_children_and_reports_their_jobs_lost(
        make_pool: Any, gates: Gates) -> None:
    pool = make_pool("prefork", gated, limit=2)
    pids = pool.info()["processes"]
    done = Recorder()
    job = gates.job("stuck")
    pool.submit(job, done)
    gates.wait_started("stuck")

    pool.stop(wait=False)

    lost = done.outcome(job).lost
    assert lost.pid in pids
    assert lost.signum == signal.SIGKILL
    assert str(lost) == f"process {lost.pid} exited with signal 9 (SIGKILL): killed by a cold stop"
    assert all(reaped(pid) for pid in pids)
    assert len(done.calls) == 1


@pytest.mark.parametrize("kind", ALL_POOLS)
def test_stop_is_idempotent_and_a_stopped_pool_refuses_jobs(kind: str, make_pool: Any) -> None:
    pool = make_pool(kind, square)
    pool.stop(wait=True)
    pool.stop(wait=False)

    assert pool.free_slots() == 0
    with pytest.raises(PoolFull):
        pool.submit(1, Recorder())


@pytest.mark.parametrize("kind", ["threads", "solo"])
def test_pools_without_processes_cannot_kill_a_job(kind: str, make_pool: Any, tmp_path: Path) -> None:
    pool = make_pool(kind, square, on_process_init=functools.partial(record_pid, tmp_path))

    assert not pool.supports_hard_kill
    with pytest.raises(NotImplementedError):
        pool.kill_job(lambda job: True, signal.SIGKILL)
    assert not list(tmp_path.glob("init-*"))  # no process, no worker_process_init


def test_pool_names_and_limits() -> None:
    assert get_pool_class("prefork") is PreforkPool
    with pytest.raises(ImproperlyConfigured, match="expected one of"):
        get_pool_class("eventlet")
    with pytest.raises(ImproperlyConfigured, match="at least 1, got 0"):
        PreforkPool(0, square)


def test_outcome_and_worker_lost_values() -> None:
    assert str(WorkerLost(1234, signum=11)) == "process 1234 exited with signal 11 (SIGSEGV)"
    assert str(WorkerLost(1234, exitcode=3)) == "process 1234 exited with code 3"
    assert isinstance(WorkerLost(7, exitcode=1).as_error(), WorkerLostError)
    assert Outcome(value=1).ok
    assert not Outcome(lost=WorkerLost(1)).ok
    with pytest.raises(ValueError, match="no value"):
        Outcome(value=1, lost=WorkerLost(1))


# -- prefork ---------------------------------------------------------------------------
@pytest.mark.parametrize(("job", "expected"), [
    (("exit", 3), "exited with code 3"),
    (("signal", signal.SIGSEGV), "exited with signal 11 (SIGSEGV)"),
])
def test_prefork_reports_a_dying_child_and_replaces_it(make_pool: Any, job: tuple,
                                                       expected: str) -> None:
    pool = make_pool("prefork", dispatch, limit=2)
    before = set(pool.info()["processes"])
    done = Recorder()

    pool.submit(job, done)
    lost = done.outcome(job).lost

    assert lost is not None
    assert lost.pid in before
    assert str(lost) == f"process {lost.pid} {expected}"
    assert wait_until(lambda: pool.free_slots() == 2)
    after = set(pool.info()["processes"])
    assert len(after) == 2
    assert lost.pid not in after
    assert reaped(lost.pid)
    for number in range(4):  # still serving, at full size
        assert pool.wait_for_free_slot(timeout=WAIT)
        pool.submit(("echo", number), done)
    pool.stop(wait=True)
    assert sorted(outcome.value for job, outcome in done.calls if job[0] == "echo") == [0, 1, 2, 3]


def test_prefork_replaces_a_child_killed_while_idle(make_pool: Any) -> None:
    pool = make_pool("prefork", dispatch, limit=2)
    victim = pool.info()["processes"][0]

    os.kill(victim, signal.SIGKILL)

    assert wait_until(lambda: victim not in pool.info()["processes"] and pool.free_slots() == 2)
    assert len(pool.info()["processes"]) == 2


def test_prefork_runs_on_process_init_in_every_child(make_pool: Any, tmp_path: Path) -> None:
    pool = make_pool("prefork", dispatch, limit=3,
                     on_process_init=functools.partial(record_pid, tmp_path))
    first = pool.info()["processes"]
    done = Recorder()
    pool.submit(("exit", 0), done)
    assert done.wait_for(1)
    assert wait_until(lambda: pool.free_slots() == 3)

    recorded = {int(path.name.removeprefix("init-")) for path in tmp_path.glob("init-*")}
    assert recorded == set(first) | set(pool.info()["processes"])
    assert os.getpid() not in recorded


def test_prefork_start_fails_when_on_process_init_raises(tmp_path: Path) -> None:
    pool = PreforkPool(2, dispatch, on_process_init=functools.partial(fail_init, tmp_path))

    with pytest.raises(PoolStartError, match="no database today"):
        pool.start()

    pids = [int(path.name.removeprefix("init-")) for path in tmp_path.glob("init-*")]
    assert pids
    assert all(reaped(pid) for pid in pids)
    assert pool.info()["state"] == "stopped"


def test_prefork_retries_a_replacement_whose_on_process_init_raised(
        make_pool: Any, tmp_path: Path, caplog: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(prefork, "INIT_RETRY", 0.05)
    pool = make_pool("prefork", dispatch, limit=1,
                     on_process_init=functools.partial(init_unless_blocked, tmp_path))
    done = Recorder()
    Path(tmp_path, "block").touch()
    pool.submit(("exit", 0), done)
    assert done.wait_for(1)

    with caplog.at_level(logging.ERROR, logger="djtasks.worker.pools"):
        assert wait_until(lambda: pool.free_slots() == 0 and any(
            "on_process_init raised" in record.getMessage() for record in caplog.records))
    assert "RuntimeError: blocked" in caplog.text
    Path(tmp_path, "block").unlink()
    assert wait_until(lambda: pool.free_slots() == 1)
    pool.submit(("echo", "back"), done)
    assert done.outcome(("echo", "back")).value == "back"


def test_prefork_children_ignore_sigint_and_sigterm(make_pool: Any, gates: Gates) -> None:
    # kill() makes the signal pending before it returns, and a child would die of it
    # before running another line: so a child that returns after the gate opens survived.
    pool = make_pool("prefork", dispatch, limit=2)
    pids = pool.info()["processes"]
    done = Recorder()
    jobs = [("gated", gates.job(name, name)) for name in ("a", "b")]
    for job in jobs:
        pool.submit(job, done)
    for name in ("a", "b"):
        gates.wait_started(name)

    for pid in pids:
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    gates.open_all()

    assert [done.outcome(job).value for job in jobs] == ["a", "b"]
    assert pool.info()["processes"] == pids


def test_prefork_kill_job_signals_the_child_running_that_job(make_pool: Any,
                                                             gates: Gates) -> None:
    pool = make_pool("prefork", dispatch, limit=2)
    done = Recorder()
    doomed, spared = ("gated", gates.job("doomed")), ("gated", gates.job("spared", "kept"))
    pool.submit(doomed, done)
    pool.submit(spared, done)
    gates.wait_started("doomed")

    assert not pool.kill_job(lambda job: job == ("gated", "nobody"), signal.SIGKILL)
    assert pool.kill_job(lambda job: job == doomed, signal.SIGKILL)

    assert done.outcome(doomed).lost.signum == signal.SIGKILL
    gates.open("spared")
    assert done.outcome(spared).value == "kept"


def test_prefork_pickling_problems_are_reported_not_fatal(make_pool: Any) -> None:
    pool = make_pool("prefork", dispatch, limit=1)
    done = Recorder()

    with pytest.raises(TypeError, match="expected a picklable job"):
        pool.submit(("echo", lambda: None), done)
    assert pool.free_slots() == 1
    pool.submit(("unpicklable", None), done)

    error = done.outcome(("unpicklable", None)).error
    assert error.exc_repr.startswith("the outcome could not be pickled: ")
    assert pool.wait_for_free_slot(timeout=WAIT)


def test_prefork_warm_stop_ends_and_reaps_every_child(tmp_path: Path) -> None:
    # The children leave through os._exit: the atexit handlers they inherited never run.
    handler = functools.partial(write_marker_outside, tmp_path, os.getpid())
    atexit.register(handler)
    try:
        pool = PreforkPool(2, dispatch)
        pool.start()
        pids = pool.info()["processes"]
        pool.stop(wait=True)
    finally:
        atexit.unregister(handler)

    assert all(reaped(pid) for pid in pids)
    assert not list(tmp_path.glob("atexit-*"))
    assert not [name for name in pool_threads() if "prefork" in name]


FORKS: list[list[str]] = []  # names of the threads alive at each fork, while recording


def _record_threads_at_fork() -> None:
    if FORKS and FORKS[0] == ["recording"]:
        FORKS.append([thread.name for thread in threading.enumerate()])


os.register_at_fork(before=_record_threads_at_fork)


def test_prefork_never_forks_while_its_supervisor_thread_runs(make_pool: Any) -> None:
    # Python 3.12+ warns (DeprecationWarning) on a fork from a multi-threaded process; under
    # an "error" filter it drops the warning silently, so record it explicitly.
    FORKS[:] = [["recording"]]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            pool = make_pool("prefork", dispatch, limit=2)
            done = Recorder()
            pool.submit(("exit", 1), done)
            assert done.wait_for(1)
            assert wait_until(lambda: pool.free_slots() == 2)
    finally:
        recorded, FORKS[:] = FORKS[1:], []

    assert len(recorded) == 3  # two at start, one replacement
    assert not [names for names in recorded if "djtasks-prefork-supervisor" in names]
    # The warning is Python's about any thread; threads left by earlier tests in this process
    # (not the pool's) make it legitimately, so it is only checked when the pool forked alone.
    if all(names == ["MainThread"] for names in recorded):
        assert not [warning for warning in caught if "fork" in str(warning.message)]


# -- prefork's backlog: jobs that wait in the parent for the first child to free ---------
@dataclass(frozen=True)
class LimitedJob:
    """A picklable job with the attributes pools read time limits from."""

    kind: str
    seconds: float = 0.0
    time_limit: float | None = None
    label: str = "test.job[1]"


def limited(job: LimitedJob) -> str:
    time.sleep(job.seconds)
    return "slept"


def backlog_pool(make_pool: Any, target: Any = dispatch, limit: int = 2) -> Any:
    return make_pool("prefork", target, limit=limit, backlog_per_child=1)


def test_a_busy_pool_takes_one_waiting_job_per_child_then_refuses(make_pool, gates):
    pool = backlog_pool(make_pool)
    done = Recorder()
    assert pool.free_slots() == 4  # two idle children, two places to wait
    for name in "abcd":
        pool.submit(("gated", gates.job(name, name)), done)
    gates.wait_started("a")
    gates.wait_started("b")

    assert pool.free_slots() == 0
    assert pool.info()["waiting"] == 2
    with pytest.raises(PoolFull):
        pool.submit(("gated", gates.job("e")), done)
    assert not Path(gates.folder, "c.started").exists()  # waiting in the parent, not in a pipe


def test_a_waiting_job_goes_to_the_first_child_that_frees(make_pool, gates):
    pool = backlog_pool(make_pool)
    done = Recorder()
    for name in "abc":
        pool.submit(("gated", gates.job(name, name)), done)
    gates.wait_started("a")
    gates.wait_started("b")

    gates.open("b")  # "a" stays blocked: "c" must not wait behind it
    gates.wait_started("c")
    gates.open("c")
    assert done.wait_for(2)
    assert sorted(job[1][1] for job, _ in done.calls) == ["b", "c"]
    assert pool.wait_for_free_slot(timeout=WAIT)


def test_a_waiting_job_outlives_a_child_that_dies(make_pool, gates):
    pool = backlog_pool(make_pool, limit=1)
    done = Recorder()
    pool.submit(("exit", 3), done)  # may die before or after the next is queued
    pool.submit(("echo", "after"), done)

    assert done.outcome(("exit", 3)).lost is not None
    wait_until(lambda: pool.free_slots() > 0)  # the driving thread replaces the child
    assert done.outcome(("echo", "after")).value == "after"


def test_terminating_a_waiting_job_takes_it_out_before_it_runs(make_pool, gates):
    pool = backlog_pool(make_pool, limit=1)
    done = Recorder()
    running, waiting = ("gated", gates.job("a", "a")), ("gated", gates.job("w", "w"))
    pool.submit(running, done)
    pool.submit(waiting, done)

    assert pool.waiting_for_member(waiting)
    assert not pool.waiting_for_member(running)
    assert pool.member_pid(waiting) == 0
    assert pool.kill_job(lambda job: job == waiting, signal.SIGKILL)
    lost = done.outcome(waiting).lost
    assert lost is not None
    assert lost.signum == signal.SIGKILL
    assert not done.outcome(waiting).started
    gates.open("a")
    assert done.outcome(running).value == "a"
    assert not Path(gates.folder, "w.started").exists()


def test_a_waiting_jobs_time_limit_starts_when_a_child_takes_it(make_pool, gates):
    pool = backlog_pool(make_pool, target=limited, limit=1)
    done = Recorder()
    first = LimitedJob("sleep", 0.6, label="first")
    # Counted from its submit, the limit would kill it while it waits for the first to end.
    second = LimitedJob("sleep", 0.05, time_limit=0.4, label="second")
    pool.submit(first, done)
    pool.submit(second, done)

    assert done.outcome(first).value == "slept"
    outcome = done.outcome(second)
    assert outcome.lost is None
    assert outcome.timeout is None
    assert outcome.value == "slept"


def test_a_stop_gives_the_waiting_jobs_back_unstarted_and_lets_the_running_one_finish(
        make_pool, gates):
    pool = backlog_pool(make_pool, limit=1)
    done = Recorder()
    running, waiting = ("gated", gates.job("a", "a")), ("echo", "w")
    pool.submit(running, done)
    pool.submit(waiting, done)
    gates.wait_started("a")

    stopping = threading.Thread(target=pool.stop, kwargs={"wait": True})
    stopping.start()
    given_back = done.outcome(waiting)  # at once, while "a" still runs
    assert not given_back.started
    assert given_back.lost is not None
    assert "before a process took the job" in str(given_back.lost)
    gates.open("a")
    stopping.join(WAIT)
    assert done.outcome(running).value == "a"
    assert done.outcome(running).started


def test_a_cold_stop_gives_the_waiting_jobs_back_unstarted(make_pool, gates):
    pool = backlog_pool(make_pool, limit=1)
    done = Recorder()
    pool.submit(("gated", gates.job("a")), done)
    pool.submit(("echo", 3), done)

    pool.stop(wait=False)
    assert not done.outcome(("echo", 3)).started


def test_on_start_hears_of_a_waiting_job_when_a_child_takes_it(make_pool, gates):
    pool = backlog_pool(make_pool, limit=1)
    done, taken = Recorder(), []
    pool.on_start = taken.append
    first, second = ("gated", gates.job("a", "a")), ("echo", "b")
    pool.submit(first, done)  # a child takes it inside submit(): no on_start
    pool.submit(second, done)
    assert taken == []

    gates.open("a")
    assert done.outcome(second).value == "b"
    assert taken == [second]


def test_a_pool_process_calls_its_targets_idle_hook_only_with_no_job_waiting():
    # The executor reads the reply of its last result write there (backends/unconfirmed.py).
    calls = []

    class Target:
        def __call__(self, job):
            calls.append(("run", job))
            return job

        def idle(self):
            calls.append(("idle", None))

    parent, child = Pipe()
    parent.send_bytes(pickle.dumps(1))
    parent.send_bytes(pickle.dumps(2))  # waiting already when job 1 is done: no idle between
    serving = threading.Thread(target=process_pool._serve, args=(child, Target()))
    serving.start()
    assert [pickle.loads(parent.recv_bytes())[0] for _ in range(2)] == ["done", "done"]
    assert wait_until(lambda: calls[-1:] == [("idle", None)]), "idle before waiting for a job"
    parent.close()
    serving.join(timeout=WAIT)
    assert calls == [("run", 1), ("run", 2), ("idle", None), ("idle", None)], "and once more at the end"
