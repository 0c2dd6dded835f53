"""result_expires and djtasks.backend_cleanup: expired results deleted in batches, daily by beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import djtasks
from djtasks import App, conf, schedules, states
from djtasks.backends.database import DatabaseBackend
from djtasks.backends.expiry import delete_expired
from djtasks.beat.stores import DatabaseStore
from djtasks.models import (
    ChordCounter,
    ChordPart,
    DeadLetter,
    GroupResult,
    PeriodicTask,
    RevokedTask,
    TaskDelivery,
    TaskResult,
)
from tests.unit.memory_broker import run_queued_tasks

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])

NOW = timezone.now()
DAY = timedelta(days=1)
OLD, RECENT = NOW - 2 * DAY, NOW - timedelta(hours=1)


def result(task_id: str, done, created=None, alias: str = "default") -> None:
    rows = TaskResult.objects.using(alias)
    rows.create(task_id=task_id, status=states.SUCCESS if done else states.STARTED)
    rows.filter(task_id=task_id).update(date_done=done, date_created=created or done or NOW)


def chord(alias: str, group_id: str, created, remaining: int, failed: bool = False) -> None:
    counters = ChordCounter.objects.using(alias)
    counters.create(group_id=group_id, total=2, remaining=remaining, failed=failed, body={})
    counters.filter(group_id=group_id).update(date_created=created)
    ChordPart.objects.using(alias).create(group_id=group_id, task_id=f"{group_id}-part")


@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_delete_expired_keeps_what_is_recent_or_still_needed(alias):
    result("old", OLD, alias=alias)
    result("recent", RECENT, alias=alias)
    result("lost", None, created=OLD, alias=alias)  # started two days ago, never finished
    result("running", None, created=RECENT, alias=alias)
    groups, revoked = GroupResult.objects.using(alias), RevokedTask.objects.using(alias)
    groups.create(group_id="g-old")
    groups.filter(group_id="g-old").update(date_created=OLD)
    groups.create(group_id="g-new")
    chord(alias, "done", OLD, remaining=0)
    chord(alias, "failed", OLD, remaining=1, failed=True)
    chord(alias, "counting", OLD, remaining=1)  # a chord still waiting keeps its counter
    revoked.create(task_id="r-expired", date_revoked=RECENT, expires=NOW - timedelta(seconds=1))
    revoked.create(task_id="r-old", date_revoked=OLD)
    revoked.create(task_id="r-live", date_revoked=RECENT, expires=NOW + DAY)

    deleted = delete_expired(alias, NOW - DAY, NOW)

    assert deleted == {"TaskResult": 2, "GroupResult": 1, "ChordCounter": 2, "RevokedTask": 2}
    assert set(TaskResult.objects.using(alias).values_list("task_id", flat=True)) == {
        "recent", "running"}
    assert list(groups.values_list("group_id", flat=True)) == ["g-new"]
    assert list(ChordCounter.objects.using(alias).values_list("group_id", flat=True)) == ["counting"]
    assert list(ChordPart.objects.using(alias).values_list("group_id", flat=True)) == ["counting"]
    assert list(revoked.values_list("task_id", flat=True)) == ["r-live"]


def test_results_are_deleted_in_batches_of_batch_size():
    for n in range(5):
        result(f"old-{n}", OLD)
    with CaptureQueriesContext(connection) as queries:
        deleted = delete_expired("default", NOW - DAY, NOW, batch_size=2)
    assert deleted["TaskResult"] == 5
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE") and "taskresult" in q["sql"]]
    assert len(deletes) == 3  # 2 + 2 + 1 rows
    with pytest.raises(ValueError, match="batch_size"):
        delete_expired("default", NOW, NOW, batch_size=0)


def test_the_backend_cleans_up_its_own_database():
    result("old", OLD)
    assert DatabaseBackend("default").cleanup(NOW - DAY, NOW)["TaskResult"] == 1


@pytest.mark.usefixtures("memory_broker")
def test_the_backend_cleanup_task_deletes_results_and_delivery_counts_past_result_expires():
    result("old", OLD)
    result("recent", RECENT)
    TaskDelivery.objects.create(task_id="old", count=5, date_last=OLD)
    TaskDelivery.objects.create(task_id="recent", count=1, date_last=RECENT)
    DeadLetter.objects.create(task_id="dead", deliveries=6, reason="r", date_created=OLD)

    djtasks.app.send_task("djtasks.backend_cleanup")
    run_queued_tasks()

    assert set(TaskResult.objects.values_list("task_id", flat=True)) == {"recent"}
    assert list(TaskDelivery.objects.values_list("task_id", flat=True)) == ["recent"]
    assert DeadLetter.objects.count() == 1  # kept for people to look at


def test_result_expires_none_deletes_nothing():
    result("old", OLD)
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "unit",
                                    "result_expires": None}):
        djtasks.app.send_task("djtasks.backend_cleanup")
        run_queued_tasks()
    assert TaskResult.objects.filter(task_id="old").exists()


def test_beat_runs_backend_cleanup_daily_at_four_by_default():
    entry = App(conf.load({}, {})).periodic_schedule()["djtasks.backend_cleanup"]
    assert entry["task"] == "djtasks.backend_cleanup"
    assert entry["schedule"] == schedules.crontab(minute=0, hour=4)


def test_the_default_entry_can_be_replaced_or_dropped():
    replaced = {"djtasks.backend_cleanup": {"task": "djtasks.backend_cleanup", "schedule": 60.0}}
    app = App(conf.load({"beat_schedule": replaced}, {}))
    assert app.periodic_schedule()["djtasks.backend_cleanup"]["schedule"] == 60.0
    assert "djtasks.backend_cleanup" not in App(conf.load({"result_expires": 0}, {})).periodic_schedule()


def test_beat_writes_the_default_entry_to_its_table():
    DatabaseStore(App(conf.load({}, {}))).sync_static()
    row = PeriodicTask.objects.get(name="djtasks.backend_cleanup")
    assert (row.task, row.crontab.minute, row.crontab.hour) == ("djtasks.backend_cleanup", "0", "4")
    assert row.expire_seconds == 12 * 3600
