"""Warm shutdown loses nothing; a second signal is a cold shutdown."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from djtasks import states
from tests.integration.conftest import DATABASES, queue_size, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def executions(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_warm_shutdown_loses_nothing(worker_factory, app_settings, broker, queue_name, tmp_path):
    record = tmp_path / "runs.txt"
    process = worker_factory("-c", "2", "--prefetch-multiplier", "4")
    results = [tasks.record.delay(str(record), f"t{i}", 0.2) for i in range(50)]
    process.wait_for_line(r"succeeded", count=2)  # mid-run: some done, some running, some reserved

    process.signal(signal.SIGTERM)
    assert process.process.wait(timeout=60) == 0
    process.wait_for_line(r"Warm shutdown")

    done = {r.id for r in results if r.state == states.SUCCESS}
    ran = executions(record)
    assert len(ran) == len(set(ran)) == len(done), "a task ran twice or ran without a result"
    assert len(done) + queue_size(broker, queue_name) == 50, "a task was lost"

    # Everything left in the queue still runs, each task exactly once overall.
    worker_factory("-c", "2")
    assert sorted(r.get(timeout=60) for r in results) == sorted(f"t{i}" for i in range(50))
    assert sorted(executions(record)) == sorted(f"t{i}" for i in range(50))


def test_a_solo_worker_stopped_mid_task_starts_nothing_it_reserved(worker_factory, app_settings,
                                                                   broker, queue_name, tmp_path):
    # The solo pool runs a task inside the loop that starts the reserved ones: the stop
    # that arrives meanwhile must keep it from starting the next when the task returns.
    process = worker_factory("-P", "solo", "--prefetch-multiplier", "4")
    starts = tmp_path / "starts.txt"
    in_flight = tasks.clock_in.delay(str(starts), "first", 3)
    queued = [tasks.add.delay(n, n) for n in range(3)]
    wait_until(lambda: starts.exists() and starts.read_text(), message="the first task started")
    process.signal(signal.SIGTERM)
    assert process.process.wait(timeout=30) == 0
    assert in_flight.get(timeout=10) == "first"  # the running task ran to its end
    assert [one.state for one in queued] == [states.PENDING] * 3
    assert queue_size(broker, queue_name) == 3, "what it held went back to the queue"


def test_second_signal_is_a_cold_shutdown(worker_factory, app_settings, tmp_path):
    process = worker_factory("-c", "1", "-P", "prefork")
    tasks.record.delay(str(tmp_path / "x"), "slow", 30)
    process.wait_for_line(r"received")
    process.signal(signal.SIGTERM)
    process.wait_for_line(r"Warm shutdown")
    process.signal(signal.SIGTERM)
    assert process.process.wait(timeout=30) == 1
    process.wait_for_line(r"Cold shutdown")
