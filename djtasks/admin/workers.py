"""Worker rows in the admin: who is online, offline or lost, read from the database (edge layer)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from djtasks.models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("hostname", "status", "heartbeat_age", "pid", "pool", "concurrency",
                    "processed", "failed", "active", "software", "started")
    search_fields = ("hostname", "host")
    readonly_fields = [field.name for field in Worker._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).with_status()

    @admin.display(description="status", ordering="status")
    def status(self, row: Worker) -> str:
        return row.status

    @admin.display(description="last heartbeat (s ago)", ordering="-last_heartbeat")
    def heartbeat_age(self, row: Worker) -> str:
        return f"{row.heartbeat_age(timezone.now()):.1f}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the workers write their rows

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False
