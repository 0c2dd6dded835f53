"""Pools enforce time limits and recycle prefork children (real processes and threads)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import pytest

from djtasks.exceptions import ImproperlyConfigured, SoftTimeLimitExceeded
from djtasks.worker.pools import POOLS, Pool
from djtasks.worker.pools.process import resident_kib
from djtasks.worker.pools.timelimits import Timeout
from tests.unit.test_pools import Recorder

WAIT = 10.0


@dataclass(frozen=True)
class Job:
    """A picklable job with the two attributes pools read time limits from."""

    kind: str
    seconds: float = 0.0
    soft_time_limit: float | None = None
    time_limit: float | None = None
    label: str = "test.job[1]"


def target(job: Job) -> object:
    if job.kind == "pid":
        return os.getpid()
    if job.kind == "sleep":  # one blocking call
        time.sleep(job.seconds)
        return "slept"
    if job.kind == "outlast":  # short steps, as a thread needs to see an async exception
        deadline = time.monotonic() + job.seconds
        try:
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "slept"
    if job.kind == "grow":  # keep some memory (written, so resident) for this process's life
        _hoard.append(b"x" * int(job.seconds))
        return os.getpid()
    if job.kind == "rss":
        return resident_kib()
    raise ValueError(job.kind)


_hoard: list[bytes] = []


@pytest.fixture
def make_pool():
    pools: list[Pool] = []

    def make(kind: str, limit: int = 2, **options: object) -> Pool:
        pool = POOLS[kind](limit, target, **options)
        pools.append(pool)
        pool.start()
        return pool

    yield make
    for pool in pools:
        pool.stop(wait=False)


def run(pool: Pool, job: Job):
    """Submit ``job`` (solo: in another thread, off the main thread) and return its outcome."""
    done = Recorder()
    if pool.name == "solo":
        threading.Thread(target=pool.submit, args=(job, done)).start()
    else:
        assert pool.wait_for_free_slot(WAIT)
        pool.submit(job, done)
    return done.outcome(job)


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_soft_limit_is_raised_inside_the_job_and_reported(kind, make_pool):
    pool = make_pool(kind)
    outcome = run(pool, Job("outlast", 30, soft_time_limit=0.2))
    assert outcome.value == "cleaned up"
    assert outcome.timeout == Timeout(soft=True, limit=0.2)
    # The member is fine afterwards, and a job within its limits is untouched.
    calm = run(pool, Job("outlast", 0.05, soft_time_limit=20, label="calm"))
    assert calm.value == "slept"
    assert calm.timeout is None


def test_solo_in_the_main_thread_interrupts_a_blocking_call(make_pool):
    pool = make_pool("solo")
    done = Recorder()
    pool.submit(Job("sleep", 30, soft_time_limit=0.2), done)  # runs here, in the main thread
    [(_job, outcome)] = done.calls
    assert "SoftTimeLimitExceeded" in str(outcome.error)
    assert outcome.timeout is None or outcome.timeout.soft


def test_prefork_soft_limit_interrupts_a_blocking_call(make_pool):
    outcome = run(make_pool("prefork"), Job("sleep", 30, soft_time_limit=0.2))
    assert "SoftTimeLimitExceeded" in str(outcome.error)
    assert outcome.timeout == Timeout(soft=True, limit=0.2)


def test_prefork_hard_limit_kills_and_replaces_the_child(make_pool):
    pool = make_pool("prefork", limit=1)
    [before] = pool.info()["processes"]
    outcome = run(pool, Job("sleep", 60, time_limit=0.3))
    assert outcome.lost is not None
    assert outcome.lost.pid == before
    assert outcome.timeout == Timeout(soft=False, limit=0.3)
    assert "hard time limit (0.3s) exceeded" in str(outcome.lost)
    after = run(pool, Job("pid")).value
    assert after != before


def test_prefork_soft_limit_caught_before_the_hard_one(make_pool):
    outcome = run(make_pool("prefork"), Job("outlast", 60, soft_time_limit=0.1, time_limit=5))
    assert outcome.value == "cleaned up"
    assert outcome.timeout == Timeout(soft=True, limit=0.1)


@pytest.mark.parametrize("kind", ["threads", "solo"])
def test_pools_that_cannot_kill_let_the_job_run_past_its_hard_limit(kind, make_pool):
    outcome = run(make_pool(kind), Job("outlast", 0.4, time_limit=0.1))
    assert outcome.value == "slept"
    assert outcome.timeout is None


def test_prefork_replaces_a_child_after_max_tasks_per_child(make_pool):
    pool = make_pool("prefork", limit=1, max_tasks_per_child=2)
    pids = [run(pool, Job("pid", label=f"p{i}")).value for i in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


def test_prefork_replaces_a_child_over_max_memory_per_child(make_pool):
    probe = make_pool("prefork", limit=1)
    baseline = run(probe, Job("rss")).value
    pool = make_pool("prefork", limit=1, max_memory_per_child=baseline + 16 * 1024)
    first = run(pool, Job("pid", label="small")).value
    assert run(pool, Job("pid", label="same")).value == first  # under the ceiling: kept
    assert run(pool, Job("grow", 64 * 1024 * 1024, label="big")).value == first  # never cut short
    assert run(pool, Job("pid", label="new")).value != first  # then replaced


@pytest.mark.parametrize("option", ["max_tasks_per_child", "max_memory_per_child"])
def test_recycling_options_must_be_positive(option):
    with pytest.raises(ImproperlyConfigured, match=option):
        POOLS["prefork"](1, target, **{option: 0})


def test_a_child_reads_its_own_memory_not_the_parents(make_pool):
    parent = resident_kib()  # the parent's /proc/self/statm is open before the fork
    pool = make_pool("prefork", limit=1)
    run(pool, Job("grow", 64 * 1024 * 1024, label="big"))
    assert run(pool, Job("rss")).value > parent + 32 * 1024  # a fork shares, so not all 64
