"""Periodic tasks and their schedules, as rows the admin can edit (storage layer).

A PeriodicTask has exactly one of an interval, a crontab or a clocked schedule. Beat
reads the enabled ones each loop and claims a due run by moving ``last_run_at`` forward
in one conditional UPDATE, so two schedulers can never both send the same run.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from djtasks import schedules


class IntervalSchedule(models.Model):
    """Every ``every`` ``period``s."""

    class Period(models.TextChoices):
        DAYS = "days", _("days")
        HOURS = "hours", _("hours")
        MINUTES = "minutes", _("minutes")
        SECONDS = "seconds", _("seconds")
        MICROSECONDS = "microseconds", _("microseconds")

    every = models.PositiveIntegerField(_("every"), validators=[MinValueValidator(1)])
    period = models.CharField(_("period"), max_length=24, choices=Period.choices)

    class Meta:
        verbose_name = _("interval")
        verbose_name_plural = _("intervals")
        ordering = ("period", "every")
        constraints = [models.UniqueConstraint(fields=["every", "period"], name="djtasks_interval_unique")]

    def __str__(self) -> str:
        return f"every {self.every} {self.period}"

    def schedule(self, relative: bool = False) -> schedules.schedule:
        return schedules.schedule(timedelta(**{self.period: self.every}), relative=relative)


CRONTAB_FIELDS = frozenset({"second", "minute", "hour", "day_of_week", "day_of_month",
                            "month_of_year", "timezone"})


class CrontabSchedule(models.Model):
    """Celery's crontab fields, plus seconds, evaluated in ``timezone`` (blank: the setting)."""

    second = models.CharField(_("second"), max_length=64, default="0")
    minute = models.CharField(_("minute"), max_length=240, default="*")
    hour = models.CharField(_("hour"), max_length=96, default="*")
    day_of_week = models.CharField(_("day of week"), max_length=64, default="*")
    day_of_month = models.CharField(_("day of month"), max_length=124, default="*")
    month_of_year = models.CharField(_("month of year"), max_length=64, default="*")
    timezone = models.CharField(_("time zone"), max_length=64, blank=True,
                                help_text=_("IANA name, e.g. Europe/London; blank: the timezone setting"))

    class Meta:
        verbose_name = _("crontab")
        verbose_name_plural = _("crontabs")
        constraints = [models.UniqueConstraint(
            fields=["second", "minute", "hour", "day_of_week", "day_of_month", "month_of_year",
                    "timezone"], name="djtasks_crontab_unique")]

    def __str__(self) -> str:
        zone = f" ({self.timezone})" if self.timezone else ""
        return (f"{self.second} {self.minute} {self.hour} {self.day_of_month} {self.month_of_year} "
                f"{self.day_of_week}{zone}")

    def clean(self) -> None:
        # The same ValueError the crontab raises in code, shown beside the field it names.
        try:
            self.schedule("UTC")
        except ValueError as exc:
            named = re.match(r"crontab (\w+):", str(exc))
            field = named.group(1) if named and named.group(1) in CRONTAB_FIELDS else NON_FIELD_ERRORS
            raise ValidationError({field: str(exc)}) from exc

    def schedule(self, default_timezone: str) -> schedules.crontab:
        zone = self.timezone or default_timezone
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"crontab timezone: invalid value {zone!r}") from exc
        return schedules.crontab(minute=self.minute, hour=self.hour, day_of_week=self.day_of_week,
                                 day_of_month=self.day_of_month, month_of_year=self.month_of_year,
                                 second=self.second, tz=tz)


class ClockedSchedule(models.Model):
    """Once, at ``clocked_time``."""

    clocked_time = models.DateTimeField(_("clocked time"))

    class Meta:
        verbose_name = _("clocked")
        verbose_name_plural = _("clocked")

    def __str__(self) -> str:
        return f"at {self.clocked_time.isoformat()}"

    def schedule(self) -> schedules.clocked:
        return schedules.clocked(self.clocked_time)


class PeriodicTaskQuerySet(models.QuerySet["PeriodicTask"]):
    def enabled(self) -> PeriodicTaskQuerySet:
        return self.filter(enabled=True).select_related("interval", "crontab", "clocked")

    def claim_run(self, pk: int, seen_last_run_at: datetime | None, now: datetime,
                  one_off: bool, task_id: str = "") -> bool:
        """Mark the run at ``now`` as sent as ``task_id``, if nobody did since we read ``seen_last_run_at``.

        A compare-and-set on last_run_at: of two schedulers that saw the same due run,
        exactly one UPDATE matches a row.
        """
        seen = Q(last_run_at__isnull=True) if seen_last_run_at is None else Q(last_run_at=seen_last_run_at)
        changes = {"last_run_at": now, "total_run_count": F("total_run_count") + 1,
                   "last_task_id": task_id}
        if one_off:
            changes["enabled"] = False
        return self.filter(seen, pk=pk, enabled=True).update(**changes) == 1

    def unclaim_run(self, pk: int, seen_last_run_at: datetime | None, now: datetime,
                    one_off: bool, seen_last_task_id: str = "") -> bool:
        """Undo ``claim_run`` after the run could not be sent, so that it stays due."""
        changes: dict = {"last_run_at": seen_last_run_at,
                         "total_run_count": F("total_run_count") - 1,
                         "last_task_id": seen_last_task_id}
        if one_off:
            changes["enabled"] = True
        return self.filter(pk=pk, last_run_at=now).update(**changes) == 1

    def record_sent(self, pk: int, task_id: str) -> None:
        """Remember ``task_id`` as the last run sent, leaving the schedule as it is (run now)."""
        self.filter(pk=pk).update(last_task_id=task_id)


class PeriodicTask(models.Model):
    """A task sent on a schedule. Entries of the beat_schedule setting are kept here too."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    task = models.CharField(_("task"), max_length=200)
    interval = models.ForeignKey(IntervalSchedule, on_delete=models.CASCADE, null=True, blank=True)
    crontab = models.ForeignKey(CrontabSchedule, on_delete=models.CASCADE, null=True, blank=True)
    clocked = models.ForeignKey(ClockedSchedule, on_delete=models.CASCADE, null=True, blank=True)
    relative = models.BooleanField(_("relative"), default=False,
                                   help_text=_("interval only: count from beat's start, not the clock"))
    args = models.JSONField(_("positional arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    queue = models.CharField(_("queue"), max_length=200, blank=True)
    exchange = models.CharField(_("exchange"), max_length=200, blank=True)
    routing_key = models.CharField(_("routing key"), max_length=200, blank=True)
    priority = models.PositiveSmallIntegerField(_("priority"), null=True, blank=True,
                                                validators=[MaxValueValidator(9)])
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    expires = models.DateTimeField(_("expires"), null=True, blank=True,
                                   help_text=_("no run is sent after this moment"))
    expire_seconds = models.PositiveIntegerField(
        _("expire seconds"), null=True, blank=True,
        help_text=_("each sent run expires this many seconds after it is sent"))
    one_off = models.BooleanField(_("one-off"), default=False)
    start_time = models.DateTimeField(_("start time"), null=True, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    last_run_at = models.DateTimeField(_("last run at"), null=True, blank=True, editable=False)
    total_run_count = models.PositiveIntegerField(_("total run count"), default=0, editable=False)
    #: The task id of the last run sent, by beat or by the console's "run now": its result.
    last_task_id = models.CharField(_("last task id"), max_length=255, blank=True, default="",
                                    editable=False)
    date_changed = models.DateTimeField(_("changed"), auto_now=True)
    description = models.TextField(_("description"), blank=True)

    objects = PeriodicTaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("periodic task")
        verbose_name_plural = _("periodic tasks")
        ordering = ("name",)
        permissions = [("run_periodictask", _("Can send a periodic task now"))]
        constraints = [models.CheckConstraint(
            condition=(Q(interval__isnull=False, crontab__isnull=True, clocked__isnull=True)
                       | Q(interval__isnull=True, crontab__isnull=False, clocked__isnull=True)
                       | Q(interval__isnull=True, crontab__isnull=True, clocked__isnull=False)),
            name="djtasks_periodictask_one_schedule",
        )]

    def __str__(self) -> str:
        return f"{self.name}: {self.interval or self.crontab or self.clocked}"

    def clean(self) -> None:
        chosen = [f for f in ("interval", "crontab", "clocked") if getattr(self, f"{f}_id")]
        if len(chosen) != 1:
            raise ValidationError(_("Choose exactly one schedule: an interval, a crontab or a clocked time."))
        if self.clocked_id and not self.one_off:
            raise ValidationError(_("A clocked schedule runs once: tick one-off."))

    def schedule(self, default_timezone: str) -> schedules.BaseSchedule:
        if self.interval is not None:
            return self.interval.schedule(relative=self.relative)
        if self.crontab is not None:
            return self.crontab.schedule(default_timezone)
        if self.clocked is not None:
            return self.clocked.schedule()
        raise ValueError(f"periodic task {self.name!r} has no schedule")


class BeatLease(models.Model):
    """Who may send periodic tasks now: one row per lease name, held until ``expires_at``."""

    name = models.CharField(max_length=100, unique=True)
    holder = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = _("beat lease")

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'} until {self.expires_at.isoformat()}"
