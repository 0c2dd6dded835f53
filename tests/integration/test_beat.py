"""Beat with real runbeat and runworker processes: timing, one leader, hand-over, changes.

Runs over django:// on SQLite and PostgreSQL (the schedule then lives in the same
database as the messages) and over RabbitMQ (schedule and results on PostgreSQL).
"""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from djtasks.models import PeriodicTask
from tests.integration.beat_runs import SENT, add_entry, each_run_sent_once, runs, send_times
from tests.integration.conftest import DATABASES, only_brokers, queue_size, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-sqlite", "django-postgres", "amqp")]

MAX_INTERVAL = 1.0
LEASE = 3.0
BEAT_READY = r"beat: Starting"
LEADER = r"is the leader"


@pytest.fixture
def beat_env(broker):
    return {"DJTASKS_TESTS_MODELS_DB": broker.database,
            "DJTASKS_BEAT_MAX_LOOP_INTERVAL": str(MAX_INTERVAL),
            "DJTASKS_BEAT_LEASE_TIMEOUT": str(LEASE)}


@pytest.fixture
def stamps(tmp_path) -> Path:
    return tmp_path / "stamps.txt"


def test_one_second_interval_runs_about_once_a_second(process_factory, broker, queue_name,
                                                      beat_env, stamps):
    add_entry(broker, queue_name, stamps)
    process_factory("runworker", "-c", "2", ready=r" ready\.$")
    beat = process_factory("runbeat", env=beat_env, ready=BEAT_READY)
    wait_until(lambda: runs(stamps), timeout=20, message="a first run")
    first = runs(stamps)[0]
    wait_until(lambda: runs(stamps)[-1] >= first + 10, timeout=25, message="ten seconds of runs")
    window = [t for t in runs(stamps) if first <= t < first + 10]
    assert 8 <= len(window) <= 12, f"{len(window)} runs in 10 seconds"
    assert beat.stop() == 0
    each_run_sent_once(stamps, beat)


def test_two_beats_send_each_run_exactly_once(process_factory, broker, queue_name, beat_env, stamps):
    add_entry(broker, queue_name, stamps)
    process_factory("runworker", "-c", "2", ready=r" ready\.$")
    beats = [process_factory("runbeat", env=beat_env, ready=BEAT_READY) for _ in range(2)]
    time.sleep(20)  # the behaviour under test is twenty seconds of two beats running
    leaders = [b for b in beats if any(re.search(LEADER, line) for line in b.lines)]
    assert len(leaders) == 1, "one leader while both ran"
    for beat in beats:  # the first to stop hands the lease over: that is fine, and intended
        assert beat.stop() == 0
    sent = len(send_times(*beats))
    assert 17 <= sent <= 22, f"{sent} runs sent in 20 seconds"
    each_run_sent_once(stamps, *beats)


def test_killed_leader_is_replaced_within_the_lease(process_factory, broker, queue_name,
                                                    beat_env, stamps):
    add_entry(broker, queue_name, stamps)
    process_factory("runworker", "-c", "2", ready=r" ready\.$")
    first = process_factory("runbeat", env=beat_env, ready=LEADER)
    second = process_factory("runbeat", env=beat_env, ready=BEAT_READY)
    wait_until(lambda: len(runs(stamps)) >= 3, timeout=20, message="three runs")
    first.kill_group()
    killed_at = time.time()
    second.wait_for_line(LEADER, timeout=LEASE + 10)
    wait_until(lambda: len([t for t in runs(stamps) if t > killed_at]) >= 3, timeout=20,
               message="three runs after the hand-over")
    second.stop()
    gaps = [b - a for a, b in pairwise(send_times(first, second))]
    assert max(gaps) <= LEASE + MAX_INTERVAL + 1, f"a gap longer than the lease: {gaps}"
    each_run_sent_once(stamps, first, second)


def test_a_frozen_leader_resumed_after_its_lease_sends_no_run_twice(process_factory, broker,
                                                                    queue_name, beat_env, stamps):
    add_entry(broker, queue_name, stamps)
    process_factory("runworker", "-c", "2", ready=r" ready\.$")
    first = process_factory("runbeat", env=beat_env, ready=LEADER)
    second = process_factory("runbeat", env=beat_env, ready=BEAT_READY)
    wait_until(lambda: len(runs(stamps)) >= 3, timeout=20, message="three runs")
    os.killpg(first.process.pid, signal.SIGSTOP)  # frozen: no renewal, no send, no exit
    try:
        second.wait_for_line(LEADER, timeout=LEASE + 10)
        taken_over = time.time()
        wait_until(lambda: len([t for t in runs(stamps) if t > taken_over]) >= 2, timeout=20,
                   message="runs sent by the new leader")
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)
    resumed = time.time()
    # The resumed beat still thinks it leads, with runs due from before it froze: each of
    # them is claimed (compare-and-set) by the beat that sends it, so neither sends it twice.
    wait_until(lambda: len([t for t in runs(stamps) if t > resumed]) >= 3, timeout=20,
               message="runs after the old leader woke up")
    for beat in (first, second):
        assert beat.stop() == 0
    each_run_sent_once(stamps, first, second)


def test_the_entry_names_the_last_run_beat_sent(process_factory, broker, queue_name, beat_env,
                                               stamps):
    entry = add_entry(broker, queue_name, stamps)
    process_factory("runworker", "-c", "2", ready=r" ready\.$")
    beat = process_factory("runbeat", env=beat_env, ready=BEAT_READY)
    wait_until(lambda: len(runs(stamps)) >= 2, timeout=20, message="two runs")
    assert beat.stop() == 0
    last = PeriodicTask.objects.using(broker.database).get(pk=entry.pk).last_task_id

    def run_ids() -> list[str]:
        return [line.split()[1] for line in stamps.read_text().splitlines() if line]

    # The console links this id to its result: it is the id of a run the worker ran.
    wait_until(lambda: last in run_ids(), message="the last run sent ran under its id")


def test_entry_disabled_in_the_database_stops(process_factory, broker, queue_name, beat_env, stamps):
    entry = add_entry(broker, queue_name, stamps)
    process_factory("runworker", "-c", "2", ready=r" ready\.$")
    process_factory("runbeat", env=beat_env, ready=BEAT_READY)
    wait_until(lambda: len(runs(stamps)) >= 2, timeout=20, message="two runs")
    PeriodicTask.objects.using(broker.database).filter(pk=entry.pk).update(enabled=False)
    disabled_at = time.time()
    time.sleep(MAX_INTERVAL + 3)  # long enough for runs that should no longer happen
    late = [t for t in runs(stamps) if t > disabled_at + MAX_INTERVAL + 1]
    assert late == [], "runs were sent after the entry was disabled"


def test_second_crontab_fires_on_the_second(process_factory, broker, queue_name, beat_env, stamps):
    add_entry(broker, queue_name, stamps, name="every-third-second",
              crontab={"second": "*/3", "timezone": "UTC"})
    process_factory("runworker", "-c", "2", ready=r" ready\.$")
    beat = process_factory("runbeat", env=beat_env, ready=BEAT_READY)
    lines = beat.wait_for_line(SENT, timeout=20, count=3)
    # Each send belongs to its own multiple of three seconds, later than the one before: a
    # wrong schedule would send every second, or twice for one due time. How late a send comes
    # is the machine's (a loaded one may stall beat past a due time, which is then folded into
    # the next, as missed runs are), so only one of the three must come soon after its time;
    # the exact due times are tests/unit/test_schedules.py's.
    sent = [datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f") for line in lines[:3]]
    dues = [moment.replace(microsecond=0, second=moment.second - moment.second % 3) for moment in sent]
    assert all(earlier < later for earlier, later in pairwise(dues)), lines
    assert min((moment - due).total_seconds() for moment, due in zip(sent, dues, strict=True)) < 1, lines
    wait_until(lambda: len(runs(stamps)) >= 3, timeout=20, message="three runs")


def test_runworker_with_embedded_beat_sends_and_runs(process_factory, broker, queue_name,
                                                     beat_env, stamps):
    add_entry(broker, queue_name, stamps)
    worker = process_factory("runworker", "-B", "-c", "2", env=beat_env, ready=r" ready\.$")
    wait_until(lambda: len(runs(stamps)) >= 3, timeout=20, message="three runs")
    assert worker.stop() == 0
    # Beat may send once more between the stop signal and the warm shutdown: that send is
    # given back to its queue, not lost, and nothing runs it now.
    each_run_sent_once(stamps, worker, left_in_queue=lambda: queue_size(broker, queue_name))
