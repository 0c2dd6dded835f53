"""Worker: one row per worker hostname, upserted by its heartbeat thread (storage layer).

A worker writes its row once per ``worker_heartbeat_interval`` in one statement, and
``offline`` on a warm shutdown. ``lost`` is never written: a reader computes it from the
age of ``last_heartbeat`` and the interval the worker stored on its row (no heartbeat for
``LOST_AFTER`` intervals), so a worker killed with ``kill -9`` reads as lost without any
sweeper, and readers need none of the workers' settings.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict, cast

from django.db import models
from django.db.models import Case, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from typing import TypeAlias

    from django_stubs_ext import WithAnnotations

    #: A Worker row read through ``with_status``, and a query of them.
    WorkerWithStatus: TypeAlias = WithAnnotations["Worker", "Status"]
    StatusQuerySet: TypeAlias = models.QuerySet[WorkerWithStatus]

ONLINE, OFFLINE, LOST = "online", "offline", "lost"
STATUS_CHOICES = [(ONLINE, _("online")), (OFFLINE, _("offline")), (LOST, _("lost"))]
#: Heartbeat intervals without one after which a worker reads as lost.
LOST_AFTER = 3
#: What a heartbeat rewrites; ``hostname`` is the key and ``started`` is kept.
UPDATED = ("pid", "host", "pool", "concurrency", "queues", "software", "heartbeat_interval",
           "last_heartbeat", "lost_after", "written_status", "processed", "failed", "active",
           "started")


class Status(TypedDict):
    """What ``with_status`` adds to each row: online, offline or lost."""

    status: str


class WorkerQuerySet(models.QuerySet["Worker"]):
    def with_status(self, now: datetime | None = None) -> StatusQuerySet:
        """Annotate ``status``: the written one, or ``lost`` once ``lost_after`` has passed."""
        annotated = self.annotate(status=Case(
            When(written_status=OFFLINE, then=Value(OFFLINE)),
            When(lost_after__lt=now or timezone.now(), then=Value(LOST)),
            default=Value(ONLINE), output_field=models.CharField()))
        # django-stubs leaves the row type of annotate() on a QuerySet subclass unbound.
        return cast("StatusQuerySet", annotated)

    def report(self, row: Worker, *, first: bool = False) -> None:
        """Upsert ``row`` in one statement; the ``first`` report of a run also sets ``started``."""
        fields = [name for name in UPDATED if first or name != "started"]
        # django-stubs cannot bind the model type of bulk_create on a QuerySet subclass.
        self.bulk_create([row], update_conflicts=True,  # type: ignore[list-item]
                         unique_fields=["hostname"], update_fields=fields)

    def forgotten(self, before: datetime) -> WorkerQuerySet:
        """Rows whose worker has not been heard of since ``before``."""
        return self.filter(last_heartbeat__lt=before)


class Worker(models.Model):
    """The last report of one worker (by hostname)."""

    hostname = models.CharField(_("hostname"), max_length=255, unique=True)
    pid = models.PositiveIntegerField(_("pid"), default=0)
    host = models.CharField(_("host"), max_length=255, blank=True)
    pool = models.CharField(_("pool"), max_length=50, blank=True)
    concurrency = models.PositiveIntegerField(_("concurrency"), default=0)
    queues = models.JSONField(_("queues"), default=list, blank=True)
    software = models.CharField(_("software"), max_length=100, blank=True)
    started = models.DateTimeField(_("started"))
    last_heartbeat = models.DateTimeField(_("last heartbeat"), db_index=True)
    heartbeat_interval = models.FloatField(_("heartbeat interval (s)"), default=2.0)
    #: last_heartbeat + LOST_AFTER intervals, written with each heartbeat.
    lost_after = models.DateTimeField(_("lost after"))
    # online or offline as the worker wrote it; read ``status`` (with_status) for lost.
    written_status = models.CharField(_("written status"), max_length=20, choices=STATUS_CHOICES,
                                      default=ONLINE)
    processed = models.PositiveBigIntegerField(_("tasks processed"), default=0)
    failed = models.PositiveBigIntegerField(_("tasks failed"), default=0)
    active = models.PositiveIntegerField(_("tasks active"), default=0)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ("hostname",)
        permissions = [("control_worker", _("Can send remote-control commands to a worker"))]

    def __str__(self) -> str:
        return self.hostname

    def status_at(self, now: datetime | None = None) -> str:
        """online, offline or lost, as ``with_status`` computes it, for one loaded row."""
        if self.written_status == OFFLINE:
            return OFFLINE
        return LOST if self.lost_after < (now or timezone.now()) else ONLINE

    def heartbeat_age(self, now: datetime | None = None) -> float:
        """Seconds since the last heartbeat."""
        return ((now or timezone.now()) - self.last_heartbeat).total_seconds()


def lost_after(last_heartbeat: datetime, interval: float) -> datetime:
    """When a worker that reported at ``last_heartbeat`` every ``interval`` s reads as lost."""
    return last_heartbeat + timedelta(seconds=interval * LOST_AFTER)
