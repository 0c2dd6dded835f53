"""Delete the selected rows in batches, after a confirmation that says how many (edge layer).

Django's own ``delete_selected`` reads every selected row into memory, collects their
relations and logs one history entry per row: on a "select all" of 100,000 results that
is 100,000 model instances and 100,000 LogEntry rows. This action counts the selection
(the planner's estimate where it is large, see ``pagination``), asks once, then deletes
by ids in batches of ``BATCH_SIZE`` (each batch its own statement, so the table is never
locked for the whole selection) and writes one LogEntry for all of it.

A ModelAdmin uses it by naming ``delete_selected`` in its ``actions``: it takes the place
of Django's action of the same name, under the same "delete" permission.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from djtasks.admin.actions import BATCH_SIZE, batches, log_bulk_action
from djtasks.admin.pagination import EstimatedCountPaginator


def delete_in_batches(queryset: QuerySet, size: int = BATCH_SIZE) -> int:
    """Delete the rows of ``queryset`` ``size`` ids at a time; return how many went.

    Only one batch of ids is in memory at a time. Each batch is deleted through the
    model's manager, so Django still cascades and sends delete signals where a model has
    them; without them it is one ``DELETE ... WHERE id IN (...)``.
    """
    manager = queryset.model._default_manager.using(queryset.db)
    deleted = 0
    for ids in batches(queryset, size=size):
        _total, per_model = manager.filter(pk__in=ids).delete()
        deleted += per_model.get(queryset.model._meta.label, 0)
    return deleted


def count_selection(queryset: QuerySet) -> tuple[int, bool]:
    """Return the number of rows selected and whether it is an estimate."""
    paginator = EstimatedCountPaginator(queryset, per_page=1)
    return paginator.count, paginator.estimated


@admin.action(permissions=["delete"], description="Delete the selected %(verbose_name_plural)s")
def delete_selected(model_admin: Any, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
    """Ask once with the count of the selection; on the confirming POST delete in batches."""
    opts = model_admin.model._meta
    if request.POST.get("post") != "yes":
        count, estimated = count_selection(queryset)
        context = {
            **model_admin.admin_site.each_context(request),
            "title": f"Delete {opts.verbose_name_plural}",
            "opts": opts,
            "count": count,
            "estimated": estimated,
            "select_across": request.POST.get("select_across") == "1",
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            # The changelist's filters and search live in the URL the action was posted to.
            "action_url": request.get_full_path(),
        }
        return TemplateResponse(request, "admin/djtasks/bulk_delete.html", context)
    deleted = delete_in_batches(queryset)
    message = f"Deleted {deleted} {opts.verbose_name if deleted == 1 else opts.verbose_name_plural}."
    log_bulk_action(request, model_admin.model, message)
    model_admin.message_user(request, message, messages.SUCCESS)
    return None
