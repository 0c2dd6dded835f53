"""TaskResult: the stored state and outcome of one task execution (storage layer)."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils.translation import gettext_lazy as _

from djtasks import states

STATE_CHOICES = sorted((state, state.title()) for state in states.ALL_STATES)


class TaskResultQuerySet(models.QuerySet["TaskResult"]):
    def ready(self) -> TaskResultQuerySet:
        return self.filter(status__in=states.READY_STATES)

    def failed(self) -> TaskResultQuerySet:
        return self.filter(status=states.FAILURE)


class TaskResult(models.Model):
    """One row per task id; every state change of the task updates it in place."""

    # Unique by a constraint, not unique=True, and no field here has db_index: on PostgreSQL
    # Django gives each such text column a second, LIKE index as well. Every result write
    # updates every index of this table; Meta.indexes lists only the ones a query reads.
    task_id = models.CharField(_("task id"), max_length=255)
    task_name = models.CharField(_("task name"), max_length=255, blank=True)
    status = models.CharField(_("state"), max_length=50, default=states.PENDING, choices=STATE_CHOICES)
    # The return value as JSON, or for a failure {"exc_type", "exc_module", "exc_message"}.
    result = models.JSONField(_("result"), null=True, blank=True, encoder=DjangoJSONEncoder)
    traceback = models.TextField(_("traceback"), blank=True)
    date_created = models.DateTimeField(_("created"), auto_now_add=True)
    date_started = models.DateTimeField(_("started"), null=True, blank=True)
    date_done = models.DateTimeField(_("done"), null=True, blank=True, db_index=True)
    # When the worker received the message, and how long the task ran (seconds).
    date_received = models.DateTimeField(_("received"), null=True, blank=True)
    runtime = models.FloatField(_("runtime (s)"), null=True, blank=True)
    worker = models.CharField(_("worker"), max_length=255, blank=True)
    retries = models.PositiveIntegerField(_("retries"), default=0)
    queue = models.CharField(_("queue"), max_length=255, blank=True)
    parent_id = models.CharField(_("parent id"), max_length=255, blank=True)
    root_id = models.CharField(_("root id"), max_length=255, blank=True)
    group_id = models.CharField(_("group id"), max_length=255, blank=True)
    task_args = models.TextField(_("arguments"), blank=True)
    task_kwargs = models.TextField(_("keyword arguments"), blank=True)
    # The arguments themselves, stored only with the result_extended setting.
    args = models.JSONField(_("arguments (JSON)"), null=True, blank=True, encoder=DjangoJSONEncoder)
    kwargs = models.JSONField(_("keyword arguments (JSON)"), null=True, blank=True,
                              encoder=DjangoJSONEncoder)
    # Ids of the tasks this task started, callbacks included: the result graph's edges.
    children = models.JSONField(_("children"), default=list, blank=True)
    # The task id this one was sent again for from the console ("retry of"; "" for none,
    # Django's way for text); the backend's upserts never name it, so it survives every
    # later state change of the row.
    retry_of = models.CharField(_("retry of"), max_length=255, blank=True, default="")

    objects = TaskResultQuerySet.as_manager()

    class Meta:
        verbose_name = _("task result")
        verbose_name_plural = _("task results")
        ordering = ("-date_created",)
        # The admin console's actions, each a permission of its own (superusers have them all).
        permissions = [
            ("revoke_taskresult", _("Can revoke a task")),
            ("terminate_taskresult", _("Can terminate a running task")),
            ("retry_taskresult", _("Can send a task again")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["task_id"], name="djtasks_result_task_id_unique"),
        ]
        indexes = [
            # A group's results; the tasks sent again from the console as retries of one.
            models.Index(fields=["group_id"], name="djtasks_result_group"),
            models.Index(fields=["retry_of"], name="djtasks_result_retry_of"),
            # The admin's search by task name prefix (LIKE 'name%'; equality and ordering by
            # name are served by the composite indexes below).
            models.Index(fields=["task_name"], name="djtasks_result_name_prefix",
                         opclasses=["varchar_pattern_ops"]),
            # "failures per minute over the last 24 h", "p95 runtime per task".
            models.Index(fields=["status", "date_done"], name="djtasks_result_status_done"),
            models.Index(fields=["task_name", "date_done"], name="djtasks_result_name_done"),
            # The admin's list: newest first (id breaks ties, as the changelist orders by
            # it too), alone and under each filter; the filters' choices read these too.
            models.Index(fields=["date_created", "id"], name="djtasks_result_created"),
            models.Index(fields=["status", "date_created", "id"], name="djtasks_result_status_created"),
            models.Index(fields=["task_name", "date_created", "id"], name="djtasks_result_name_created"),
            models.Index(fields=["worker", "date_created", "id"], name="djtasks_result_worker_created"),
            models.Index(fields=["queue", "date_created", "id"], name="djtasks_result_queue_created"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name or '?'}[{self.task_id}] {self.status}"
