"""The console's actions: one POST per action, its own permission, a LogEntry (edge layer).

Two kinds, with one rule for both:

- **Object actions** are buttons on a change page (revoke this task, replay this dead
  letter). Each is a URL, ``<object id>/action/<name>/``: GET shows a confirmation page
  (with the action's form, when it has one), POST does it. Without the permission the URL
  answers 403 and the button is not drawn. Django's admin views are CSRF-protected, so a
  POST without the token is refused before the action runs.
- **Bulk actions** are Django admin actions of the changelist, declared with
  ``@admin.action(permissions=[...])``; a ModelAdmin names each permission with a
  ``has_<name>_permission`` method, which ``console_permission`` writes in one line. A
  "select all" hands them a lazy queryset: ``batches()`` walks it by ids, never loading
  the rows.

Every action writes a LogEntry, so it shows in the admin's history with who did it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

#: How many ids a bulk action handles per statement or message.
BATCH_SIZE = 1000


@dataclass(frozen=True)
class ObjectAction:
    """A button on a change page: its URL name, label, permission and the method that does it.

    ``method`` names a method of the ModelAdmin, called as ``method(request, obj, data)``
    with the form's cleaned data (``{}`` without a form); it returns the sentence shown to
    the user and written to the LogEntry, or raises ``ActionRefused`` with the reason.
    ``available`` names a method ``(obj) -> bool`` that hides the button where the action
    means nothing (retry a task that is still running).
    """

    name: str
    label: str
    permission: str
    method: str
    form: type[forms.Form] | None = None
    available: str | None = None
    #: Actions that lose something ask twice; the others are one click from the change page.
    confirm: bool = False


class ActionRefused(Exception):  # noqa: N818 - read as "the action was refused"
    """The action cannot be done on this object; the message says why."""


class ConsoleActionsMixin:
    """Object actions for a ModelAdmin: URLs, permission checks, confirmation and history."""

    object_actions: tuple[ObjectAction, ...] = ()

    # Provided by admin.ModelAdmin. The type: ignore comments below call what it provides
    # (get_object, message_user, get_queryset, its views), which mypy cannot see on a mixin.
    admin_site: admin.AdminSite
    opts: Any
    model: type[Model]

    def has_console_permission(self, request: HttpRequest, codename: str) -> bool:
        """Say whether the user holds ``djtasks.<codename>`` (superusers hold every one)."""
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        own = [path("<path:object_id>/action/<str:name>/",
                    self.admin_site.admin_view(self.object_action_view),
                    name="{}_{}_action".format(*info))]
        return own + super().get_urls()  # type: ignore[misc]

    def permitted_object_actions(self, request: HttpRequest, obj: Model) -> list[dict[str, Any]]:
        """Return the actions this user may take on ``obj``, with their URLs, for the template."""
        permitted = []
        for action in self.object_actions:
            if not self.has_console_permission(request, action.permission):
                continue
            if action.available and not getattr(self, action.available)(obj):
                continue
            permitted.append({"name": action.name, "label": action.label,
                              "url": self.object_action_url(obj, action.name),
                              "direct": action.form is None and not action.confirm})
        return permitted

    def object_action_url(self, obj: Model, name: str) -> str:
        info = self.opts.app_label, self.opts.model_name
        return reverse("admin:{}_{}_action".format(*info), args=[quote(obj.pk), name],
                       current_app=self.admin_site.name)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        context = dict(extra_context or {})
        if obj is not None:
            context["console_actions"] = self.permitted_object_actions(request, obj)
        return super().change_view(request, object_id, form_url, context)  # type: ignore[misc]

    def object_action_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        action = next((each for each in self.object_actions if each.name == name), None)
        if action is None:
            raise Http404(f"no action {name!r} on {self.opts.verbose_name}")
        if not self.has_console_permission(request, action.permission):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None:
            raise Http404(f"no {self.opts.verbose_name} {object_id!r}")
        form = self.object_action_form(action, obj, request.POST if request.method == "POST" else None)
        if request.method != "POST" or (form is not None and not form.is_valid()):
            return self.render_confirmation(request, obj, action, form)
        try:
            message = getattr(self, action.method)(request, obj, form.cleaned_data if form else {})
        except ActionRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)  # type: ignore[attr-defined]
        else:
            log_object_action(request, obj, message)
            self.message_user(request, message, messages.SUCCESS)  # type: ignore[attr-defined]
        return HttpResponseRedirect(self.after_action_url(request, obj))

    def object_action_form(self, action: ObjectAction, obj: Model, data: Any) -> forms.Form | None:
        """Build ``action``'s form, bound to ``data`` (None: unbound); None without a form.

        A ModelAdmin overrides this where a form's choices depend on the object.
        """
        if action.form is None:
            return None
        return action.form() if data is None else action.form(data)

    def after_action_url(self, request: HttpRequest, obj: Model) -> str:
        """Where the user lands after an action: the object's page, or the list if it is gone.

        Asked through the admin's own queryset: its rows may live in another database than
        the default one (queue messages live in the broker's).
        """
        info = self.opts.app_label, self.opts.model_name
        if self.get_queryset(request).filter(pk=obj.pk).exists():  # type: ignore[attr-defined]
            return reverse("admin:{}_{}_change".format(*info), args=[quote(obj.pk)],
                           current_app=self.admin_site.name)
        return reverse("admin:{}_{}_changelist".format(*info), current_app=self.admin_site.name)

    def render_confirmation(self, request: HttpRequest, obj: Model, action: ObjectAction,
                            form: forms.Form | None) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.label}: {obj}",
            "opts": self.opts,
            "object": obj,
            "action": action,
            "form": form,
            "action_url": self.object_action_url(obj, action.name),
        }
        return TemplateResponse(request, "admin/djtasks/object_action.html", context)


def console_permission(codename: str) -> Callable[[Any, HttpRequest], bool]:
    """Return a ``has_<name>_permission`` method for ``@admin.action(permissions=[name])``."""

    def has_permission(model_admin: Any, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{model_admin.opts.app_label}.{codename}")

    has_permission.__name__ = f"has_{codename}_permission"
    return has_permission


def _user_id(request: HttpRequest) -> int:
    # Console views are for staff users: the user is logged in, so it has a primary key.
    assert request.user.pk is not None, "console actions need a logged-in user"
    return request.user.pk


def log_object_action(request: HttpRequest, obj: Model, message: str) -> LogEntry:
    """Write ``message`` to the admin history of ``obj``, as done by ``request.user``."""
    return LogEntry.objects.create(
        user_id=_user_id(request), content_type=content_type_of(type(obj)),
        object_id=str(obj.pk), object_repr=str(obj)[:200], action_flag=CHANGE,
        change_message=message)


def log_bulk_action(request: HttpRequest, model: type[Model], message: str) -> LogEntry:
    """Write one history entry for an action on many rows (or on something without a row)."""
    return LogEntry.objects.create(
        user_id=_user_id(request), content_type=content_type_of(model),
        object_id=None, object_repr=str(model._meta.verbose_name_plural)[:200],
        action_flag=CHANGE, change_message=message)


def content_type_of(model: type[Model]) -> ContentType:
    # Not the concrete model: a proxy's history is its own page's history.
    return ContentType.objects.get_for_model(model, for_concrete_model=False)


def batches(queryset: QuerySet, field: str = "pk", size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    """Yield the ``field`` values of ``queryset`` in lists of ``size``, in id order.

    Reads by keyset (``pk > last``), so a "select all" of a million rows holds one batch in
    memory and each statement stays cheap; rows the action deletes as it goes are fine.
    """
    rows = queryset.order_by("pk").values_list("pk", field)
    last = None
    while True:
        page = list((rows.filter(pk__gt=last) if last is not None else rows)[:size])
        if not page:
            return
        last = page[-1][0]
        yield [value for _pk, value in page]
