"""IntervalSchedule in the admin (edge layer)."""

from django.contrib import admin

from djtasks.models import IntervalSchedule


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(admin.ModelAdmin):
    list_display = ("__str__", "every", "period")
