"""ClockedSchedule in the admin (edge layer)."""

from django.contrib import admin

from djtasks.models import ClockedSchedule


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(admin.ModelAdmin):
    list_display = ("__str__", "clocked_time")
