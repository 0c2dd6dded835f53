"""TaskResult in the admin: read-only, searchable by id and name (edge layer)."""

from django.contrib import admin

from djtasks.models import TaskResult


@admin.register(TaskResult)
class TaskResultAdmin(admin.ModelAdmin):
    list_display = ("task_id", "task_name", "status", "date_created", "date_done", "worker")
    list_filter = ("status", "task_name", "worker")
    search_fields = ("task_id", "task_name")
    date_hierarchy = "date_created"
    readonly_fields = [field.name for field in TaskResult._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
