"""Time-limit bookkeeping, the worker's choice of limits, and how a job's end is settled (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from djtasks import states
from djtasks.conf import load
from djtasks.exceptions import TimeLimitExceeded, WorkerLostError
from djtasks.protocol import TaskMessage
from djtasks.worker import features
from djtasks.worker.capabilities import unmet_wishes
from djtasks.worker.executor import Report
from djtasks.worker.pools import PreforkPool, SoloPool, ThreadsPool
from djtasks.worker.pools.base import Outcome, TargetFailure, WorkerLost
from djtasks.worker.pools.timelimits import Deadlines, TimeLimits, Timeout
from djtasks.worker.settlement import Fate, failure_to_record, late_fate


@dataclass(frozen=True)
class Limited:
    soft_time_limit: object = None
    time_limit: object = None


# -- TimeLimits and Deadlines, on a fake clock ------------------------------------------
def test_limits_are_read_from_the_job_and_only_positive_numbers_count():
    assert TimeLimits.of(Limited(2, 5)) == TimeLimits(soft=2.0, hard=5.0)
    assert TimeLimits.of(object()) == TimeLimits()
    assert not TimeLimits.of(Limited(0, -1))
    assert not TimeLimits.of(Limited(True, "5"))


def test_soft_then_hard_fire_once_each_at_their_time():
    deadlines = Deadlines()
    deadlines.start("a", TimeLimits(soft=2, hard=5), now=100.0)
    assert deadlines.next_at() == 102.0
    assert deadlines.due(101.9) == []
    assert deadlines.due(102.0) == [("a", Timeout(soft=True, limit=2))]
    assert deadlines.due(103.0) == []  # fired once
    assert deadlines.next_at() == 105.0
    assert deadlines.due(105.5) == [("a", Timeout(soft=False, limit=5))]
    assert deadlines.next_at() == math.inf
    assert deadlines.finish("a") == Timeout(soft=False, limit=5)


def test_a_hard_limit_passing_first_fires_alone():
    deadlines = Deadlines()
    deadlines.start("a", TimeLimits(soft=10, hard=3), now=0.0)
    assert deadlines.due(11.0) == [("a", Timeout(soft=False, limit=3))]
    assert deadlines.due(12.0) == []
    assert deadlines.next_at() == math.inf


def test_finish_reports_what_fired_and_forgets_the_job():
    deadlines = Deadlines()
    deadlines.start("soft", TimeLimits(soft=1, hard=9), now=0.0)
    deadlines.start("hard", TimeLimits(soft=1, hard=2), now=0.0)
    deadlines.start("calm", TimeLimits(soft=50), now=0.0)
    deadlines.due(1.0)
    deadlines.due(2.0)
    assert deadlines.finish("soft") == Timeout(soft=True, limit=1)
    # A pool that cannot kill reports the soft limit only: the job ran to its end.
    assert deadlines.finish("hard", hard_enforced=False) == Timeout(soft=True, limit=1)
    assert deadlines.finish("calm") is None
    assert deadlines.finish("never started") is None
    assert deadlines.due(100.0) == []


def test_a_job_without_limits_is_not_watched_and_wait_time_is_capped():
    deadlines = Deadlines()
    deadlines.start("a", TimeLimits(), now=0.0)
    assert deadlines.next_at() == math.inf
    assert deadlines.wait_time(now=0.0, longest=1.0) == 1.0
    deadlines.start("b", TimeLimits(hard=0.25), now=0.0)
    assert deadlines.wait_time(now=0.1, longest=1.0) == pytest.approx(0.15)
    assert deadlines.wait_time(now=5.0, longest=1.0) == 0.0


# -- which limits and flags a job gets ----------------------------------------------------
class _Task:
    soft_time_limit = None
    time_limit = None
    reject_on_worker_lost = None
    acks_late = None


def test_the_call_wins_over_the_task_which_wins_over_the_worker():
    settings = load({"task_time_limit": 30, "task_soft_time_limit": 20})
    task = _Task()
    message = TaskMessage(id="x", task="t")
    assert features.TimeLimits().before_job(message, task, settings)["time_limit"] == 30
    task.time_limit, task.soft_time_limit = 10, 5
    chosen = features.TimeLimits().before_job(message, task, settings)
    assert (chosen["time_limit"], chosen["soft_time_limit"]) == (10, 5)
    message = TaskMessage(id="x", task="t", time_limit=3, soft_time_limit=None)
    chosen = features.TimeLimits().before_job(message, task, settings)
    assert (chosen["time_limit"], chosen["soft_time_limit"]) == (3, 5)  # each limit on its own


def test_flags_follow_the_task_then_the_settings():
    message = TaskMessage(id="x", task="t")
    task = _Task()
    chosen = features.Acks().before_job(message, task, load({}))
    assert chosen["reject_on_worker_lost"] is False
    assert chosen["acks_on_failure_or_timeout"] is True
    settings = load({"task_reject_on_worker_lost": True, "task_acks_on_failure_or_timeout": False})
    chosen = features.Acks().before_job(message, task, settings)
    assert chosen["reject_on_worker_lost"] is True
    assert chosen["acks_on_failure_or_timeout"] is False
    task.reject_on_worker_lost = False
    assert features.Acks().before_job(message, task, settings)["reject_on_worker_lost"] is False


# -- what becomes of an acks_late message -------------------------------------------------
@dataclass(frozen=True)
class _Job:
    reject_on_worker_lost: bool = False
    acks_on_failure_or_timeout: bool = True


LOST = Outcome(lost=WorkerLost(pid=1, signum=9))
KILLED = Outcome(lost=WorkerLost(pid=1, signum=9), timeout=Timeout(soft=False, limit=2))
FAILED = Outcome(value=Report(states.FAILURE, 0.1, "boom"))
SUCCEEDED = Outcome(value=Report(states.SUCCESS, 0.1, "4"))
BROKEN = Outcome(error=TargetFailure("OperationalError()"))


@pytest.mark.parametrize(("job", "outcome", "fate"), [
    (_Job(), SUCCEEDED, Fate.ACK),
    (_Job(acks_on_failure_or_timeout=False), SUCCEEDED, Fate.ACK),
    (_Job(), FAILED, Fate.ACK),
    (_Job(acks_on_failure_or_timeout=False), FAILED, Fate.REJECT),
    (_Job(acks_on_failure_or_timeout=False), BROKEN, Fate.REJECT),
    (_Job(), KILLED, Fate.ACK),
    (_Job(acks_on_failure_or_timeout=False), KILLED, Fate.REQUEUE),
    (_Job(reject_on_worker_lost=True), KILLED, Fate.ACK),  # a timeout is not a lost worker
    (_Job(), LOST, Fate.ACK),
    (_Job(acks_on_failure_or_timeout=False), LOST, Fate.REJECT),
    (_Job(reject_on_worker_lost=True), LOST, Fate.REQUEUE),
    (_Job(), Outcome(value=Report(states.REJECTED, 0.1, "no")), Fate.REJECT),
])
def test_late_fate_follows_celery(job, outcome, fate):
    assert late_fate(job, outcome) is fate


def test_the_main_process_records_what_the_member_could_not():
    assert isinstance(failure_to_record(KILLED), TimeLimitExceeded)
    assert "hard time limit (2s) exceeded" in str(failure_to_record(KILLED))
    assert isinstance(failure_to_record(LOST), WorkerLostError)
    assert "could not run or record" in str(failure_to_record(BROKEN))
    assert failure_to_record(FAILED) is None
    assert failure_to_record(Outcome(value=Report(states.SUCCESS, 1, "x"),
                                     timeout=Timeout(soft=True, limit=1))) is None


# -- what a pool cannot do, said at start-up ------------------------------------------------
class _Named:
    def __init__(self, name: str, time_limit: float | None = None) -> None:
        self.name, self.time_limit = name, time_limit


def test_pools_that_cannot_kill_warn_of_hard_limits():
    tasks = [_Named("a.short", 30), _Named("a.free")]
    for pool in (ThreadsPool, SoloPool):
        [warning] = unmet_wishes(pool, load({"task_time_limit": 60}), tasks)
        assert f"the {pool.name} pool cannot enforce hard time limits" in warning
        assert "task_time_limit=60" in warning
        assert "a.short.time_limit=30" in warning
        assert "a.free" not in warning
    assert unmet_wishes(PreforkPool, load({"task_time_limit": 60}), tasks) == []
    assert unmet_wishes(ThreadsPool, load({}), [_Named("a.free")]) == []


def test_pools_without_processes_warn_that_recycling_is_ignored():
    [warning] = unmet_wishes(SoloPool, load({}), [], max_tasks_per_child=10)
    assert "max_tasks_per_child=10 is ignored" in warning
    assert unmet_wishes(PreforkPool, load({}), [], max_tasks_per_child=10,
                        max_memory_per_child=1000) == []
