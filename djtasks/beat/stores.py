"""DatabaseStore: periodic entries from the database, the setting and add_periodic_task (processes layer).

Static entries (the ``beat_schedule`` setting and ``add_periodic_task``) are written to
the PeriodicTask table when beat starts, updated by name and never duplicated, so that the
admin shows every schedule and one code path reads them all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from djtasks import schedules
from djtasks.application import App
from djtasks.exceptions import ImproperlyConfigured
from djtasks.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask

logger = logging.getLogger("djtasks.beat")

ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "relative"})
OPTION_COLUMNS = frozenset({"queue", "exchange", "routing_key", "priority", "headers"})
#: Interval periods from the largest down: a timedelta is stored in the largest that divides it.
PERIODS = (("days", 86400_000_000), ("hours", 3600_000_000), ("minutes", 60_000_000),
           ("seconds", 1_000_000), ("microseconds", 1))


@dataclass(frozen=True)
class Entry:
    """One enabled periodic task as beat sees it on one loop."""

    pk: int
    name: str
    task: str
    schedule: schedules.BaseSchedule
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    last_run_at: datetime | None = None  # as stored: the claim compares against it
    last_task_id: str = ""  # as stored: a claim given back restores it
    since: datetime | None = None  # what the schedule counts from (last_run_at, if any)
    one_off: bool = False
    start_time: datetime | None = None
    expires: datetime | None = None
    expire_seconds: int | None = None


class DatabaseStore:
    """Read, write and claim periodic entries of one app in the PeriodicTask table."""

    def __init__(self, app: App) -> None:
        self.app = app
        # pk -> (when the row last changed, the problem): a broken row is logged when first
        # seen and again when it changes, not on every loop that skips it.
        self._broken: dict[int, tuple[datetime | None, str]] = {}

    def sync_static(self) -> list[str]:
        """Write the setting's and add_periodic_task's entries to the table; return their names."""
        names = []
        for name, spec in self.app.periodic_schedule().items():
            with transaction.atomic():
                write_static_entry(name, spec)
            names.append(name)
        return names

    def enabled_entries(self) -> list[Entry]:
        """Return the enabled entries, their schedules built; a broken row is skipped."""
        entries = []
        broken: dict[int, tuple[datetime | None, str]] = {}
        for row in PeriodicTask.objects.enabled():
            try:
                entries.append(self.entry(row))
            except ValueError as exc:  # edited outside the admin's validation: say so, go on
                broken[row.pk] = (row.date_changed, str(exc))
                if self._broken.get(row.pk) != broken[row.pk]:
                    logger.error("beat: periodic task %r is skipped: %s", row.name, exc)
        self._broken = broken
        return entries

    def claim(self, entry: Entry, now: datetime, task_id: str = "") -> bool:
        """Record the run at ``now`` (to be sent as ``task_id``) unless another beat did.

        True when this beat may send it.
        """
        return PeriodicTask.objects.claim_run(entry.pk, entry.last_run_at, now, entry.one_off,
                                              task_id)

    def unclaim(self, entry: Entry, now: datetime) -> None:
        """Give back the claim of the run at ``now``: it could not be sent, so it stays due."""
        PeriodicTask.objects.unclaim_run(entry.pk, entry.last_run_at, now, entry.one_off,
                                         entry.last_task_id)

    def entry(self, row: PeriodicTask) -> Entry:
        """Return ``row`` as beat sees it; ValueError if its schedule cannot be built."""
        options = {key: getattr(row, key) for key in OPTION_COLUMNS
                   if getattr(row, key) not in ("", None, {})}
        return Entry(
            pk=row.pk, name=row.name, task=row.task,
            schedule=row.schedule(self.app.settings.timezone),
            args=tuple(row.args or ()), kwargs=dict(row.kwargs or {}), options=options,
            # A crontab that never ran counts from when its entry last changed (as
            # django-celery-beat does): a new nightly entry waits for the night.
            last_run_at=row.last_run_at, last_task_id=row.last_task_id,
            since=row.last_run_at or (row.date_changed if row.crontab_id else None),
            one_off=row.one_off, start_time=row.start_time,
            expires=row.expires, expire_seconds=row.expire_seconds,
        )


def write_static_entry(name: str, spec: Mapping[str, Any]) -> PeriodicTask:
    """Create or update the PeriodicTask called ``name`` from a beat_schedule-style entry."""
    if not isinstance(spec, Mapping):
        raise ImproperlyConfigured(f"beat_schedule[{name!r}]: expected a dict, got {spec!r}")
    unknown = set(spec) - ENTRY_KEYS
    if unknown or "task" not in spec or "schedule" not in spec:
        raise ImproperlyConfigured(
            f"beat_schedule[{name!r}]: expected keys task, schedule and some of "
            f"{sorted(ENTRY_KEYS - {'task', 'schedule'})}, got {sorted(spec)}"
        )
    schedule = schedules.schedule_from_setting(spec["schedule"])
    options = dict(spec.get("options") or {})
    expires = options.pop("expires", None)
    unknown_options = set(options) - OPTION_COLUMNS
    if unknown_options:
        raise ImproperlyConfigured(
            f"beat_schedule[{name!r}] options: unknown {sorted(unknown_options)}, expected some "
            f"of {sorted(OPTION_COLUMNS | {'expires'})}"
        )
    values: dict[str, Any] = {
        "task": spec["task"], "args": list(spec.get("args") or ()),
        "kwargs": dict(spec.get("kwargs") or {}), "relative": bool(spec.get("relative", False)),
        "interval": None, "crontab": None, "clocked": None,
        "queue": options.get("queue", ""), "exchange": options.get("exchange", ""),
        "routing_key": options.get("routing_key", ""), "priority": options.get("priority"),
        "headers": options.get("headers") or {},
        "expire_seconds": int(expires) if isinstance(expires, (int, float)) else None,
        "expires": expires if isinstance(expires, datetime) else None,
    }
    values.update(schedule_row(schedule))
    values["one_off"] = isinstance(schedule, schedules.clocked)
    task, _created = PeriodicTask.objects.update_or_create(name=name, defaults=values)
    return task


def schedule_row(schedule: schedules.BaseSchedule) -> dict[str, Any]:
    """Return the PeriodicTask foreign key (get or create the row) for ``schedule``."""
    if isinstance(schedule, schedules.schedule):
        every, period = interval_parts(schedule.run_every)
        return {"interval": IntervalSchedule.objects.get_or_create(every=every, period=period)[0]}
    if isinstance(schedule, schedules.crontab):
        return {"crontab": CrontabSchedule.objects.get_or_create(**crontab_fields(schedule))[0]}
    if isinstance(schedule, schedules.clocked):
        return {"clocked": ClockedSchedule.objects.create(clocked_time=schedule.clocked_time)}
    raise ImproperlyConfigured(f"beat: cannot store a {type(schedule).__name__} schedule")


def interval_parts(run_every: timedelta) -> tuple[int, str]:
    """Express ``run_every`` as (every, period) in the largest period that divides it."""
    total = run_every // timedelta(microseconds=1)
    for period, size in PERIODS:
        if total % size == 0:
            return total // size, period
    raise AssertionError("unreachable: microseconds divide every timedelta")


def crontab_fields(cron: schedules.crontab) -> dict[str, Any]:
    zone = getattr(cron.tz, "key", None) if cron.tz is not None else ""
    return {"second": str(cron.second), "minute": str(cron.minute), "hour": str(cron.hour),
            "day_of_week": str(cron.day_of_week), "day_of_month": str(cron.day_of_month),
            "month_of_year": str(cron.month_of_year), "timezone": zone if zone else str(cron.tz or "")}
