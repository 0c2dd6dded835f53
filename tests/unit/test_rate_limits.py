"""The worker's rate-limit gate: with a fake clock, and on the real consumer over memory://."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from djtasks import task
from djtasks.registry import TaskRegistry
from djtasks.testing import InProcessWorker
from djtasks.worker.rate_limits import MIN_WAIT, RateLimits
from tests.testapp import tasks


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Slots:
    """The one thing the gate asks a pool."""

    def __init__(self, free: int) -> None:
        self.free = free

    def free_slots(self) -> int:
        return self.free


def job(task: str, n: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(task=task, id=f"{task}-{n}"))


@pytest.fixture
def gate():
    registry = TaskRegistry()
    registry.register(tasks.clock_in_limited)  # 2/s
    registry.register(tasks.clock_in_free)
    widths: list[int] = []
    clock = FakeClock()
    limits = RateLimits(registry, Slots(4), on_held=widths.append, clock=clock)
    return SimpleNamespace(limits=limits, clock=clock, widths=widths, pool=limits.pool)


LIMITED, FREE = tasks.clock_in_limited.name, tasks.clock_in_free.name


def test_the_first_passes_the_next_wait_in_order_and_others_pass_by(gate):
    first, second, third, other = job(LIMITED, 0), job(LIMITED, 1), job(LIMITED, 2), job(FREE, 0)
    assert gate.limits.hold(first, "m0") is False
    assert gate.limits.hold(second, "m1") is True
    assert gate.limits.hold(third, "m2") is True
    assert gate.limits.hold(other, "m3") is False
    assert gate.widths == [1, 2]  # the prefetch window grows by each held message

    assert gate.limits.release() == []
    assert gate.limits.wait_time(1.0) == pytest.approx(0.5)
    gate.clock.now = 0.5
    assert gate.limits.release() == [(second, "m1")]
    assert gate.limits.hold(second, "m1") is False  # released: its token is taken already
    assert gate.limits.hold(job(LIMITED, 3), "m4") is True  # still behind the third
    gate.clock.now = 1.0
    assert gate.limits.release() == [(third, "m2")]
    assert gate.widths == [1, 2, 1, 2, 1]


def test_no_release_and_no_short_wait_without_a_free_slot(gate):
    gate.limits.hold(job(LIMITED, 0), "m0")
    gate.limits.hold(job(LIMITED, 1), "m1")
    gate.clock.now = 10
    gate.pool.free = 0
    assert gate.limits.wait_time(1.0) == 1.0
    assert gate.limits.release() == []
    gate.pool.free = 1
    assert gate.limits.wait_time(1.0) == MIN_WAIT  # due now: never a zero-length busy wait
    assert len(gate.limits.release()) == 1


def test_a_rate_set_at_run_time_and_removed(gate):
    gate.limits.set_rate(FREE, "1/m")
    assert gate.limits.rate_of(FREE) == pytest.approx(1 / 60)
    assert gate.limits.hold(job(FREE, 0), "m0") is False
    assert gate.limits.hold(job(FREE, 1), "m1") is True
    gate.limits.set_rate(FREE, 0)
    assert gate.limits.rate_of(FREE) is None
    assert [m for _, m in gate.limits.release()] == ["m1"]  # no limit: held ones go at once
    with pytest.raises(ValueError, match="'fast'"):
        gate.limits.set_rate(FREE, "fast")


def test_clear_gives_back_every_held_message(gate):
    gate.limits.hold(job(LIMITED, 0), "m0")
    gate.limits.hold(job(LIMITED, 1), "m1")
    gate.limits.hold(job(LIMITED, 2), "m2")
    assert [m for _, m in gate.limits.clear()] == ["m1", "m2"]
    assert gate.limits.held == 0


def test_a_bad_rate_on_a_task_is_refused_when_it_is_defined():
    with pytest.raises(ValueError, match="'10/fortnight'"):
        @task(rate_limit="10/fortnight")
        def never():  # pragma: no cover - never registered
            pass


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_broker")
def test_the_in_process_worker_spaces_limited_starts_and_lets_others_pass(tmp_path):
    path = tmp_path / "starts.txt"
    for n in range(3):
        tasks.clock_in_limited.delay(str(path), f"limited-{n}")
    tasks.clock_in_free.delay(str(path), "free")
    with InProcessWorker() as worker:  # a prefetch window of 1
        worker.join(timeout=30)
    lines = [line.split() for line in path.read_text().splitlines()]
    order = [label for label, _ in lines]
    starts = {label: float(when) for label, when in lines}
    assert order == ["limited-0", "free", "limited-1", "limited-2"]
    assert starts["limited-1"] - starts["limited-0"] >= 0.5 - 0.01
    assert starts["limited-2"] - starts["limited-1"] >= 0.5 - 0.01
