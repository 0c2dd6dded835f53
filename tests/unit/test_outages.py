"""Every loop that meets the database backs off while it fails and stops on a lasting failure."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import IntegrityError, OperationalError, transaction

from djtasks import App, conf
from djtasks.backends.outages import Outage, describe, retry_transient
from djtasks.beat.scheduler import BaseScheduler
from djtasks.exceptions import DatabaseUnavailable
from djtasks.transport.lease import Renewer
from djtasks.utils.retries import Backoff
from djtasks.worker.release import EtaRelease
from djtasks.worker.worker import Worker

LOCKED = OperationalError("database is locked")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_its_ceiling_with_jitter_and_starts_over_after_reset():
    highest = Backoff(first=0.1, maximum=1.0, rand=lambda: 1.0)
    assert [round(highest.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    lowest = Backoff(first=0.1, maximum=1.0, rand=lambda: 0.0)
    assert [round(lowest.next_delay(), 3) for _ in range(3)] == [0.05, 0.1, 0.2]
    highest.reset()
    assert highest.next_delay() == pytest.approx(0.1)


def test_backoff_refuses_a_nonsense_schedule():
    with pytest.raises(ValueError, match="expected 0 < first <= maximum"):
        Backoff(first=2, maximum=1)


def test_an_outage_logs_once_when_it_starts_and_once_when_it_ends(caplog):
    clock = FakeClock()
    outage = Outage("beat", 60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="djtasks.database"):
        delays = []
        for _ in range(5):
            delays.append(outage.failed(LOCKED))
            clock.now += 1
        outage.succeeded()
        outage.succeeded()  # no incident open: nothing to say
    assert delays == sorted(delays)
    assert delays[-1] > delays[0]
    assert [r.getMessage() for r in caplog.records] == [
        "beat: database error (OperationalError: database is locked); retrying with backoff",
        "beat: database reachable again after 5.0 s (5 retries)",
    ]
    assert not outage.ongoing
    assert outage.backoff.failures == 0


def test_an_outage_longer_than_the_limit_gives_up_naming_the_setting_and_the_error():
    clock = FakeClock()
    outage = Outage("worker", 30, clock=clock)
    outage.failed(LOCKED)
    clock.now += 29
    outage.failed(LOCKED)
    clock.now += 1
    with pytest.raises(DatabaseUnavailable, match=r"worker: the database kept failing for 30 s, "
                       r"longer than database_retry_timeout \(30 s\); last error: "
                       r"OperationalError: database is locked") as raised:
        outage.failed(LOCKED)
    assert raised.value.__cause__ is LOCKED


def test_without_a_limit_an_outage_never_gives_up():
    clock = FakeClock()
    outage = Outage("eta release", None, clock=clock)
    for _ in range(100):
        outage.failed(LOCKED)
        clock.now += 3600


def test_describe_keeps_the_first_line_of_a_driver_message():
    error = OperationalError('connection failed: server closed\n\tThis probably means...')
    assert describe(error) == "OperationalError: connection failed: server closed"


@pytest.mark.django_db(transaction=True)
def test_a_transient_error_of_a_write_is_retried_until_it_passes():
    calls, sleeps = [], []

    def write():
        calls.append(1)
        if len(calls) < 3:
            raise LOCKED
        return "stored"

    assert retry_transient(write, "default", "store", sleep=sleeps.append) == "stored"
    assert len(calls) == 3
    assert len(sleeps) == 2
    assert sleeps[1] >= sleeps[0] / 2


@pytest.mark.django_db(transaction=True)
def test_a_write_is_not_retried_inside_a_transaction_nor_for_an_error_that_lasts():
    def locked():
        raise LOCKED

    def duplicate():
        raise IntegrityError("UNIQUE constraint failed")

    with transaction.atomic(), pytest.raises(OperationalError):
        retry_transient(locked, "default", "store", sleep=pytest.fail)
    with pytest.raises(IntegrityError):
        retry_transient(duplicate, "default", "store", sleep=pytest.fail)
    with pytest.raises(OperationalError, match="locked"):  # past its time: the error itself
        retry_transient(locked, "default", "store", give_up_after=0, sleep=pytest.fail)


class FailingScheduler(BaseScheduler):
    """A scheduler whose database fails ``failures`` times (for ever if None), then works."""

    def __init__(self, app, failures=None):
        super().__init__(app, max_interval=5)
        self.failures = failures
        self.ticks = 0

    def tick(self):
        self.ticks += 1
        if self.failures is None or self.ticks <= self.failures:
            raise LOCKED
        return 5.0


class RecordingStop(threading.Event):
    """beat's stop event: records each pause, really waits it, stops after ``until`` ticks."""

    def __init__(self, scheduler, until):
        super().__init__()
        self.scheduler, self.until, self.pauses = scheduler, until, []

    def wait(self, timeout=None):
        self.pauses.append(timeout)
        time.sleep(min(timeout, 0.05))
        if self.scheduler.ticks >= self.until:
            self.set()
        return self.is_set()


def app_with(**settings):
    return App(conf.load({"broker_url": "memory://", **settings}, {}))


def test_beat_backs_off_while_the_database_fails_then_carries_on(caplog):
    scheduler = FailingScheduler(app_with(), failures=4)
    stop = RecordingStop(scheduler, until=6)
    with caplog.at_level(logging.WARNING, logger="djtasks.beat"):
        scheduler.run(stop)
    assert scheduler.ticks == 6
    backoff, normal = stop.pauses[:4], stop.pauses[4:]
    assert backoff == sorted(backoff), backoff
    assert backoff[-1] > backoff[0]
    assert normal == [5.0, 5.0]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "database error" in lines[0]
    assert "reachable again" in lines[1]


def test_beat_stops_once_the_database_failed_longer_than_the_limit():
    scheduler = FailingScheduler(app_with(database_retry_timeout=0.2))
    stop = RecordingStop(scheduler, until=1000)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="database_retry_timeout"):
        scheduler.run(stop)
    assert scheduler.ticks >= 3
    assert time.monotonic() - started < 5


def test_the_worker_loop_backs_off_and_stops_on_a_lasting_failure(monkeypatch):
    worker = Worker(app_with(database_retry_timeout=0.3), pool="solo")
    pauses = []
    monkeypatch.setattr(worker, "pause", lambda seconds: (pauses.append(seconds), time.sleep(0.1)))
    monkeypatch.setattr(worker.consumer, "step", lambda: (_ for _ in ()).throw(LOCKED))
    with pytest.raises(DatabaseUnavailable, match="worker: the database kept failing"):
        worker.consume_until_stopped()
    assert len(pauses) >= 3
    assert pauses == sorted(pauses[:2]) + pauses[2:]


def test_the_worker_loop_carries_on_after_a_passing_failure(monkeypatch):
    worker = Worker(app_with(), pool="solo")
    steps = []

    def step():
        steps.append(1)
        if len(steps) <= 3:
            raise LOCKED
        worker.stopping = True

    monkeypatch.setattr(worker, "pause", lambda seconds: None)
    monkeypatch.setattr(worker.consumer, "step", step)
    worker.consume_until_stopped()
    assert len(steps) == 4


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.01)


def test_the_eta_release_thread_outlives_any_number_of_database_failures(monkeypatch, caplog):
    release = EtaRelease(app_with(), "w@h", interval=0.01)
    rounds = []

    def run_once():
        rounds.append(1)
        if len(rounds) <= 5:
            raise LOCKED
        return 0

    monkeypatch.setattr(release, "run_once", run_once)
    monkeypatch.setattr(release, "_shut_down", lambda: None)
    with caplog.at_level(logging.WARNING, logger="djtasks.worker"):
        release.start()
        wait_for(lambda: len(rounds) >= 8)
        release.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "eta release: database error" in lines[0]


def test_the_lease_renewer_outlives_failures_of_any_kind(caplog):
    renewals = []

    def renew():
        renewals.append(1)
        if len(renewals) == 2:
            raise RuntimeError("a bug, not the database")
        if len(renewals) <= 4:
            raise LOCKED

    with caplog.at_level(logging.WARNING):
        renewer = Renewer("default", renew, interval=0.01)
        wait_for(lambda: len(renewals) >= 6)
        renewer.stop()
    assert sum("database error" in r.getMessage() for r in caplog.records) == 1
