"""PeriodicTask in the admin: schedules in words, next and last run, run now, enable/disable (edge layer).

"Run now" sends one run through beat's own sending code (``beat.scheduler.run_now``), so it
carries the periodic task's arguments, routing and expiry exactly as beat's runs do; the
schedule is left alone. Beat and "run now" record the id of the run they send
(``last_task_id``), which links the row to its last result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

import djtasks
from djtasks.admin.actions import (
    ActionRefused,
    ConsoleActionsMixin,
    ObjectAction,
    log_bulk_action,
)
from djtasks.admin.cron_words import describe_crontab
from djtasks.beat.scheduler import next_run_at, run_now
from djtasks.beat.stores import DatabaseStore
from djtasks.exceptions import OperationalError
from djtasks.models import PeriodicTask, TaskResult

#: How a moment is shown: UTC, to the second.
MOMENT = "%Y-%m-%d %H:%M:%S UTC"


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(ConsoleActionsMixin, admin.ModelAdmin):
    list_display = ("name", "task", "enabled", "schedule_in_words", "next_run", "last_run_at",
                    "last_result", "total_run_count")
    list_filter = ("enabled", "one_off", "task")
    list_select_related = ("interval", "crontab", "clocked")
    search_fields = ("name", "task", "description")
    readonly_fields = ("schedule_in_words", "next_run", "last_run_at", "last_result", "total_run_count",
                       "date_changed")
    actions = ("enable", "disable")
    object_actions = (ObjectAction("run_now", "Run now", "run_periodictask", "run_now_one"),)
    fieldsets = (
        (None, {"fields": ("name", "task", "enabled", "description")}),
        ("Schedule", {"fields": ("interval", "crontab", "clocked", "relative", "one_off",
                                 "start_time")}),
        ("Arguments", {"fields": ("args", "kwargs")}),
        ("Routing and expiry", {"fields": ("queue", "exchange", "routing_key", "priority",
                                           "headers", "expires", "expire_seconds")}),
        ("History", {"fields": ("schedule_in_words", "next_run", "last_run_at", "last_result",
                                "total_run_count", "date_changed")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The last run's result in the same query: one indexed lookup per row, no N+1.
        last = TaskResult.objects.filter(task_id=OuterRef("last_task_id"))
        return super().get_queryset(request).annotate(
            last_result_pk=Subquery(last.values("pk")[:1]),
            last_result_status=Subquery(last.values("status")[:1]))

    @admin.display(description="schedule")
    def schedule_in_words(self, row: PeriodicTask) -> str:
        return schedule_words(row)

    @admin.display(description="next run (UTC)")
    def next_run(self, row: PeriodicTask) -> str:
        if row.pk is None:
            return "-"
        return next_run_text(row, timezone.now())

    @admin.display(description="last result")
    def last_result(self, row: PeriodicTask) -> str:
        if not row.last_task_id:
            return "-"
        result_pk = getattr(row, "last_result_pk", None)
        if result_pk is None:
            return format_html('<span class="djtasks-last-result">{} (no result yet)</span>',
                               row.last_task_id)
        url = reverse("admin:djtasks_taskresult_change", args=[quote(result_pk)],
                      current_app=self.admin_site.name)
        return format_html('<a class="djtasks-last-result" href="{}">{}</a> {}', url,
                           getattr(row, "last_result_status", ""), row.last_task_id)

    def run_now_one(self, request: HttpRequest, row: PeriodicTask, data: dict[str, Any]) -> str:
        now = timezone.now()
        if row.expires is not None and row.expires <= now:
            raise ActionRefused(f"{row.name} expired at {row.expires.astimezone(UTC):{MOMENT}}: "
                                "beat sends no run of it, and neither does run now.")
        try:
            sent = run_now(djtasks.app, row, now)
        except ValueError as exc:  # a row whose schedule cannot be built
            raise ActionRefused(f"Cannot send {row.name}: {exc}") from exc
        except OperationalError as exc:
            raise ActionRefused(f"Could not send {row.name}: {exc}") from exc
        return (f"Sent {row.task} now as {sent.id} (run now of {row.name} by "
                f"{request.user.get_username()}); its schedule is unchanged.")

    @admin.action(description="Enable the selected periodic tasks", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected periodic tasks", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet, enabled: bool) -> None:
        count = queryset.update(enabled=enabled)
        message = f"{count} periodic task(s) {'enabled' if enabled else 'disabled'}."
        log_bulk_action(request, PeriodicTask, message)
        self.message_user(request, message, messages.SUCCESS)


def schedule_words(row: PeriodicTask) -> str:
    """Return the row's schedule as a reader says it: "every 15 minutes", "at 03:00 on Monday"."""
    if row.crontab is not None:
        cron = row.crontab
        words = describe_crontab(cron.minute, cron.hour, cron.day_of_week, cron.day_of_month,
                                 cron.month_of_year, cron.second)
        return f"{words} ({cron.timezone or djtasks.app.settings.timezone})"
    return str(row.interval or row.clocked or "-")


def next_run_text(row: PeriodicTask, now: datetime) -> str:
    """Return when beat sends ``row`` next, computed from its schedule as beat computes it."""
    if not row.enabled:
        return "disabled"
    try:
        due = next_run_at(DatabaseStore(djtasks.app).entry(row), now)
    except ValueError as exc:  # a row edited outside the admin's validation
        return f"never: {exc}"
    if due is None:
        return "never"
    return "due now" if due <= now else f"{due.astimezone(UTC):{MOMENT}}"
