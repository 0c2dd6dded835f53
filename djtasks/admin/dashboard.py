"""The dashboard's admin entry: its changelist is the dashboard page (edge layer)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import path

from djtasks.dashboard.views import dashboard_view
from djtasks.models import Dashboard


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    """No table behind it: only the changelist URL exists, and it draws the dashboard."""

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [path("", self.admin_site.admin_view(self.changelist_view),
                     name="{}_{}_changelist".format(*info))]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "title": "djtasks dashboard", **(extra_context or {})}
        return dashboard_view(request, context)

    def has_view_permission(self, request: HttpRequest, obj: Dashboard | None = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.view_dashboard")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Dashboard | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Dashboard | None = None) -> bool:
        return False
