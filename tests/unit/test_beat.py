"""Beat's scheduler, store and lease in-process, with an injected clock and a real broker queue.

Two DatabaseSchedulers with different holders stand for two runbeat processes: the lease
and the run claim must let exactly one of them send each due run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import kombu
import pytest
from django.contrib.admin.sites import site
from django.test import override_settings

import djtasks
from djtasks import App, conf, schedules
from djtasks.beat.lease import Lease
from djtasks.beat.scheduler import DatabaseScheduler, next_run_at
from djtasks.beat.stores import DatabaseStore, interval_parts
from djtasks.exceptions import ImproperlyConfigured
from djtasks.models import BeatLease, CrontabSchedule, IntervalSchedule, PeriodicTask
from djtasks.signals import on_after_configure

pytestmark = pytest.mark.django_db
QUEUE = "beat-unit"
START = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def memory_broker():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": QUEUE,
                                    "beat_lease_timeout": 15.0}):
        yield
    with kombu.Connection("memory://") as connection:
        kombu.Queue(QUEUE, kombu.Exchange(QUEUE), routing_key=QUEUE)(connection.default_channel).purge()


def sent_tasks() -> list[str]:
    """Drain the queue; return the task names of the messages beat sent."""
    names = []
    with kombu.Connection("memory://") as connection:
        queue = kombu.Queue(QUEUE, kombu.Exchange(QUEUE), routing_key=QUEUE)(connection.default_channel)
        while (message := queue.get(no_ack=True)) is not None:
            names.append(message.headers["task"])
    return names


def every_second(name: str = "tick", **fields) -> PeriodicTask:
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    return PeriodicTask.objects.create(name=name, task="tests.testapp.tasks.add", args=[1, 1],
                                       interval=interval, **fields)


def scheduler(clock: Clock, holder: str) -> DatabaseScheduler:
    return DatabaseScheduler(djtasks.app, max_interval=5, clock=clock, holder=holder)


def test_a_due_entry_is_sent_once_and_recorded():
    clock = Clock()
    every_second()
    beat = scheduler(clock, "a")
    beat.tick()
    assert sent_tasks() == ["tests.testapp.tasks.add"]
    row = PeriodicTask.objects.get(name="tick")
    assert (row.last_run_at, row.total_run_count) == (START, 1)
    beat.tick()  # same instant: nothing more is due
    assert sent_tasks() == []


def test_two_schedulers_send_each_run_once():
    clock = Clock()
    every_second()
    first, second = scheduler(clock, "a"), scheduler(clock, "b")
    for _ in range(10):
        first.tick()
        second.tick()
        clock.advance(1)
    assert len(sent_tasks()) == 10
    assert BeatLease.objects.get().holder == "a"


def test_claim_is_a_compare_and_set():
    every_second()
    store = DatabaseStore(djtasks.app)
    entry = store.enabled_entries()[0]
    assert store.claim(entry, START)
    assert not store.claim(entry, START), "the same run, seen before the first claim, is gone"


def test_a_dead_leader_is_replaced_after_the_lease():
    clock = Clock()
    every_second()
    leader, follower = scheduler(clock, "a"), scheduler(clock, "b")
    leader.tick()
    assert not follower.lease.acquire()
    clock.advance(14)
    assert not follower.lease.acquire()
    clock.advance(2)  # the leader stopped renewing 16 s ago; the lease was 15 s
    follower.tick()
    assert follower.lease.held
    assert BeatLease.objects.get().holder == "b"


def test_release_hands_over_at_once():
    clock = Clock()
    first = Lease("a", 15, clock=clock)
    assert first.acquire()
    first.release()
    assert Lease("b", 15, clock=clock).acquire()


def test_missed_runs_are_sent_once_after_downtime():
    clock = Clock()
    every_second(last_run_at=START - timedelta(hours=3))
    beat = scheduler(clock, "a")
    beat.tick()
    assert len(sent_tasks()) == 1
    beat.tick()
    assert sent_tasks() == []


def test_one_off_entry_runs_once_and_is_disabled():
    clock = Clock()
    every_second(one_off=True)
    beat = scheduler(clock, "a")
    beat.tick()
    clock.advance(5)
    beat.tick()
    assert len(sent_tasks()) == 1
    assert not PeriodicTask.objects.get().enabled


def test_disabled_entry_and_entry_before_its_start_are_not_sent():
    clock = Clock()
    every_second(name="off", enabled=False)
    every_second(name="later", start_time=START + timedelta(minutes=1))
    beat = scheduler(clock, "a")
    assert beat.tick() <= 5
    assert sent_tasks() == []
    clock.advance(60)
    beat.tick()
    assert len(sent_tasks()) == 1


def test_beat_records_the_id_of_the_run_it_sent():
    every_second()
    scheduler(Clock(), "a").tick()
    with kombu.Connection("memory://") as connection:
        queue = kombu.Queue(QUEUE, kombu.Exchange(QUEUE), routing_key=QUEUE)(connection.default_channel)
        message = queue.get(no_ack=True)
    assert PeriodicTask.objects.get().last_task_id == message.headers["id"]


def test_a_run_that_could_not_be_sent_keeps_the_last_sent_id():
    # A priority out of range, written past the admin's validation: the publish refuses it.
    every_second(priority=42, last_task_id="sent-before")
    scheduler(Clock(), "a").tick()
    assert sent_tasks() == []
    row = PeriodicTask.objects.get()
    assert (row.last_run_at, row.total_run_count, row.last_task_id) == (None, 0, "sent-before")


def test_the_next_run_follows_the_schedule_the_start_and_the_expiry():
    store = DatabaseStore(djtasks.app)
    fresh = every_second(name="fresh")
    ran = every_second(name="ran", last_run_at=START - timedelta(seconds=0.5))
    later = every_second(name="later", start_time=START + timedelta(minutes=1))
    gone = every_second(name="gone", expires=START)
    nightly = PeriodicTask.objects.create(
        name="nightly", task="tests.testapp.tasks.add",
        crontab=CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC"))
    nightly.refresh_from_db()
    assert next_run_at(store.entry(fresh), START) == START
    assert next_run_at(store.entry(ran), START) == START + timedelta(seconds=0.5)
    assert next_run_at(store.entry(later), START) == START + timedelta(minutes=1)
    assert next_run_at(store.entry(gone), START) is None
    after_change = nightly.date_changed.astimezone(UTC)
    expected = after_change.replace(hour=3, minute=0, second=0, microsecond=0)
    if expected <= after_change:
        expected += timedelta(days=1)
    assert next_run_at(store.entry(nightly), after_change) == expected


def test_expired_entry_is_not_sent_and_expire_seconds_reach_the_message():
    clock = Clock()
    every_second(name="gone", expires=START - timedelta(seconds=1))
    every_second(name="short", expire_seconds=30)
    scheduler(clock, "a").tick()
    with kombu.Connection("memory://") as connection:
        queue = kombu.Queue(QUEUE, kombu.Exchange(QUEUE), routing_key=QUEUE)(connection.default_channel)
        message = queue.get(no_ack=True)
        assert queue.get(no_ack=True) is None
    assert message.headers["expires"] == (START + timedelta(seconds=30)).isoformat()


def test_static_entries_are_written_once_and_updated():
    settings = {"broker_url": "memory://", "task_default_queue": QUEUE, "beat_schedule": {
        "add-every-30": {"task": "tests.testapp.tasks.add", "schedule": 30.0, "args": (16, 16)},
        "nightly": {"task": "tests.testapp.tasks.mul", "schedule": schedules.crontab(minute=0, hour=3),
                    "options": {"queue": "night", "expires": 60}},
    }}
    app = App(conf.load(settings))

    @on_after_configure.connect
    def more(sender, **kwargs):
        if sender is app:
            sender.add_periodic_task(10.0, djtasks.signature("tests.testapp.tasks.add", (1, 2)),
                                     name="from-code")

    try:
        store = DatabaseStore(app)
        store.sync_static()
        store.sync_static()
    finally:
        on_after_configure.disconnect(more)
    rows = {row.name: row for row in PeriodicTask.objects.all()}
    assert set(rows) == {"add-every-30", "nightly", "from-code", "djtasks.backend_cleanup"}
    assert (rows["add-every-30"].interval.every, rows["add-every-30"].interval.period) == (30, "seconds")
    assert rows["add-every-30"].args == [16, 16]
    assert (rows["nightly"].crontab.minute, rows["nightly"].crontab.hour) == ("0", "3")
    assert (rows["nightly"].queue, rows["nightly"].expire_seconds) == ("night", 60)
    assert CrontabSchedule.objects.count() == 2  # nightly's, and backend_cleanup's at 4:00


def test_a_bad_static_entry_names_the_problem():
    app = App(conf.load({"beat_schedule": {"x": {"task": "t", "schedule": 5, "option": {}}}}))
    with pytest.raises(ImproperlyConfigured, match=r"beat_schedule\['x'\]"):
        DatabaseStore(app).sync_static()


def test_interval_parts_use_the_largest_period():
    assert interval_parts(timedelta(days=2)) == (2, "days")
    assert interval_parts(timedelta(minutes=90)) == (90, "minutes")
    assert interval_parts(timedelta(seconds=0.5)) == (500000, "microseconds")


def test_invalid_crontab_shows_its_message_on_the_admin_form(rf):
    form_class = site._registry[CrontabSchedule].get_form(rf.get("/"))
    form = form_class(data={"second": "0", "minute": "*", "hour": "25", "day_of_week": "*",
                            "day_of_month": "*", "month_of_year": "*", "timezone": ""})
    assert not form.is_valid()
    with pytest.raises(ValueError, match="hour") as raised:
        schedules.crontab(hour="25")
    assert form.errors["hour"] == [str(raised.value)]


def test_a_broken_row_is_logged_when_first_seen_and_when_it_changes_not_on_every_loop(caplog):
    crontab = CrontabSchedule.objects.create(minute="*")
    PeriodicTask.objects.create(name="tick", task="tests.testapp.tasks.add", crontab=crontab)
    broken = CrontabSchedule.objects.filter(pk=crontab.pk)
    broken.update(timezone="Mars/Olympus_Mons")  # as a raw UPDATE could
    store = DatabaseStore(djtasks.app)

    def skips_logged() -> int:
        return sum("periodic task 'tick' is skipped" in r.getMessage() for r in caplog.records)

    for _ in range(3):
        assert store.enabled_entries() == []
    assert skips_logged() == 1
    PeriodicTask.objects.get(name="tick").save()  # changed, still broken: said again
    store.enabled_entries()
    assert skips_logged() == 2
    broken.update(timezone="UTC")  # repaired
    assert [entry.name for entry in store.enabled_entries()] == ["tick"]
    broken.update(timezone="Mars/Olympus_Mons")  # broken again: said again
    store.enabled_entries()
    assert skips_logged() == 3
