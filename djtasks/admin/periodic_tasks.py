"""PeriodicTask in the admin: every schedule beat sends, enable/disable in bulk (edge layer)."""

from django.contrib import admin, messages

from djtasks.models import PeriodicTask


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(admin.ModelAdmin):
    list_display = ("name", "task", "enabled", "interval", "crontab", "clocked", "last_run_at",
                    "total_run_count")
    list_filter = ("enabled", "one_off", "task")
    search_fields = ("name", "task", "description")
    readonly_fields = ("last_run_at", "total_run_count", "date_changed")
    actions = ("enable", "disable")
    fieldsets = (
        (None, {"fields": ("name", "task", "enabled", "description")}),
        ("Schedule", {"fields": ("interval", "crontab", "clocked", "relative", "one_off",
                                 "start_time")}),
        ("Arguments", {"fields": ("args", "kwargs")}),
        ("Routing and expiry", {"fields": ("queue", "exchange", "routing_key", "priority",
                                           "headers", "expires", "expire_seconds")}),
        ("History", {"fields": ("last_run_at", "total_run_count", "date_changed")}),
    )

    @admin.action(description="Enable the selected periodic tasks")
    def enable(self, request, queryset) -> None:
        count = queryset.update(enabled=True)
        self.message_user(request, f"{count} periodic task(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable the selected periodic tasks")
    def disable(self, request, queryset) -> None:
        count = queryset.update(enabled=False)
        self.message_user(request, f"{count} periodic task(s) disabled.", messages.SUCCESS)
