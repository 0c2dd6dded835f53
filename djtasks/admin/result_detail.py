"""The TaskResult change page as a detail page: formatted fields and the result graph (edge layer).

Arguments, result and traceback come from task messages and task code, so from anyone who
can send a task: every one is rendered through ``format_html`` or a template, never
trusted as HTML. JSON is pretty-printed; a sensitive task's arguments read "[hidden]"
whatever the row holds.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

import djtasks
from djtasks.admin.result_graph import read_graph
from djtasks.models import TaskResult
from djtasks.task import HIDDEN_ARGUMENTS, is_sensitive

#: The change page's sections; the graph (parent, root, children, group) is drawn below them.
DETAIL_FIELDSETS = (
    (None, {"fields": ("task_id", "task_name", "state", "worker", "queue", "retries")}),
    ("Times", {"fields": ("date_created", "date_received", "date_started", "date_done",
                          "runtime")}),
    ("Arguments", {"fields": ("arguments", "keyword_arguments")}),
    ("Outcome", {"fields": ("outcome", "traceback_text")}),
)


def pretty_json(value: Any) -> str:
    """Return ``value`` as indented JSON (what the row stored, keys in their order)."""
    return json.dumps(value, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder)


def preformatted(text: str) -> str:
    """Return ``text`` in an escaped ``<pre>`` block, or a dash when there is none."""
    if not text:
        return "-"
    return format_html('<pre class="djtasks-pre" style="white-space:pre-wrap;margin:0">{}</pre>',
                       text)


def task_is_sensitive(task_name: str) -> bool:
    """True when this process knows ``task_name`` as a ``sensitive=True`` task."""
    return is_sensitive(djtasks.app.tasks.get(task_name))


class ResultDetailMixin:
    """Fieldsets and display methods of the detail page, and the graph in its context."""

    # ClassVar[Any]: ModelAdmin's own (stricter) types apply where this is mixed in.
    fieldsets: ClassVar[Any] = DETAIL_FIELDSETS
    readonly_fields: ClassVar[Any] = (*(field.name for field in TaskResult._meta.fields),
                       "state", "arguments", "keyword_arguments", "outcome", "traceback_text")

    # Provided by admin.ModelAdmin.
    admin_site: admin.AdminSite
    opts: Any

    @admin.display(description="arguments")
    def arguments(self, row: TaskResult) -> str:
        return self._shown_arguments(row, row.args, row.task_args)

    @admin.display(description="keyword arguments")
    def keyword_arguments(self, row: TaskResult) -> str:
        return self._shown_arguments(row, row.kwargs, row.task_kwargs)

    @admin.display(description="result")
    def outcome(self, row: TaskResult) -> str:
        return preformatted("" if row.result is None else pretty_json(row.result))

    @admin.display(description="traceback")
    def traceback_text(self, row: TaskResult) -> str:
        return preformatted(row.traceback)

    def _shown_arguments(self, row: TaskResult, stored: Any, shown: str) -> str:
        # The JSON when result_extended stored it, else the message's argsrepr.
        if task_is_sensitive(row.task_name):
            return preformatted(HIDDEN_ARGUMENTS)
        return preformatted(pretty_json(stored) if stored is not None else shown)

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "",
                           obj: TaskResult | None = None) -> HttpResponse:
        if obj is not None:
            context["result_graph"] = read_graph(obj, self.result_url)
        # A mixin: ModelAdmin, after it in the MRO, provides render_change_form.
        return super().render_change_form(request, context, add, change,  # type: ignore[misc]
                                          form_url, obj)

    def result_url(self, pk: int) -> str:
        """Return the admin page of the TaskResult with primary key ``pk``."""
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                       args=[quote(pk)], current_app=self.admin_site.name)
