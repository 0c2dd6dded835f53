"""CrontabSchedule in the admin; an invalid field shows the crontab's own message (edge layer)."""

from django.contrib import admin

from djtasks.models import CrontabSchedule


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(admin.ModelAdmin):
    list_display = ("__str__", "timezone")
    fields = ("second", "minute", "hour", "day_of_week", "day_of_month", "month_of_year", "timezone")
