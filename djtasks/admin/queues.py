"""The queues page: depth and consumers per queue, and purge behind a confirmation (edge layer).

A queue lives in the broker, not in a table: the page asks the broker each time, and the
purge goes through ``djtasks.app.control.purge`` as a user's code would.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

import djtasks
from djtasks.admin.actions import log_bulk_action
from djtasks.dashboard.depths import queue_depths
from djtasks.models import Queue

PURGE_PERMISSION = "purge_queue"


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    """The list of queues and their purge URL; no add, change or delete pages."""

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path("", self.admin_site.admin_view(self.changelist_view),
                 name="{}_{}_changelist".format(*info)),
            path("<path:name>/purge/", self.admin_site.admin_view(self.purge_view),
                 name="{}_{}_purge".format(*info)),
        ]

    def may_purge(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.{PURGE_PERMISSION}")

    def purge_url(self, name: str) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_purge", args=[name],
                       current_app=self.admin_site.name)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        depths = queue_depths(djtasks.app)
        purge_urls = ([(depth.name, self.purge_url(depth.name)) for depth in depths.queues]
                      if self.may_purge(request) else [])
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": "Queues",
                   "depths": depths, "purge_urls": purge_urls, **(extra_context or {})}
        return TemplateResponse(request, "admin/djtasks/queue/list.html", context)

    def purge_view(self, request: HttpRequest, name: str) -> HttpResponse:
        """GET: "Purge N messages from queue X?"; POST: purge it, log it, back to the list."""
        if not self.may_purge(request):
            raise PermissionDenied
        if request.method == "POST":
            purged = djtasks.app.control.purge([name]).get(name, 0)
            message = f"Purged {purged} messages from {name}"
            log_bulk_action(request, Queue, message)
            self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
                current_app=self.admin_site.name))
        depth = queue_depths(djtasks.app, [name])
        waiting = depth.queues[0].waiting if depth.queues else None
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "title": f"Purge queue {name}", "queue_name": name, "waiting": waiting,
                   "error": depth.error, "action_url": self.purge_url(name)}
        return TemplateResponse(request, "admin/djtasks/queue/purge.html", context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Queue | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Queue | None = None) -> bool:
        return False
