"""Groups, chord counters and revoked ids: the stored side of the canvas (storage layer).

A chord is joined by counting its header tasks as they finish: ``ChordCounter.remaining``
is decremented in the finishing task's transaction, and a ``ChordPart`` row per counted
task id (unique per group) makes counting a message that is delivered twice a no-op.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class GroupResult(models.Model):
    """The member task ids of a group, in order, so ``GroupResult.restore`` finds them."""

    group_id = models.CharField(_("group id"), max_length=255, unique=True)
    result = models.JSONField(_("member task ids"), default=list)
    date_created = models.DateTimeField(_("created"), auto_now_add=True)
    date_done = models.DateTimeField(_("done"), null=True, blank=True)

    class Meta:
        verbose_name = _("group result")
        verbose_name_plural = _("group results")
        ordering = ("-date_created",)

    def __str__(self) -> str:
        return f"group {self.group_id} ({len(self.result or ())} tasks)"


class ChordCounter(models.Model):
    """How many header tasks of a chord are still to finish, and the body to call then."""

    group_id = models.CharField(_("group id"), max_length=255, unique=True)
    total = models.PositiveIntegerField(_("total"))
    # Goes below zero only when a part is counted again after the chord completed.
    remaining = models.IntegerField(_("remaining"))
    failed = models.BooleanField(_("failed"), default=False)
    body = models.JSONField(_("body"))  # the body signature's wire dict
    member_ids = models.JSONField(_("member task ids"), default=list)
    date_created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("chord counter")
        verbose_name_plural = _("chord counters")

    def __str__(self) -> str:
        return f"chord {self.group_id}: {self.remaining}/{self.total} remaining"


class ChordPart(models.Model):
    """One header task counted towards its chord; unique, so a redelivery counts once."""

    group_id = models.CharField(_("group id"), max_length=255)
    task_id = models.CharField(_("task id"), max_length=255)

    class Meta:
        verbose_name = _("chord part")
        verbose_name_plural = _("chord parts")
        constraints = [models.UniqueConstraint(fields=["group_id", "task_id"],
                                               name="djtasks_chordpart_unique")]

    def __str__(self) -> str:
        return f"{self.task_id} in chord {self.group_id}"


class RevokedTaskQuerySet(models.QuerySet["RevokedTask"]):
    def active(self, now: datetime) -> RevokedTaskQuerySet:
        """Return the revocations still in force at ``now`` (no expiry, or one after it)."""
        return self.filter(Q(expires__isnull=True) | Q(expires__gt=now))


class RevokedTask(models.Model):
    """A revoked task id that workers must not run, until ``expires`` when that is set."""

    task_id = models.CharField(_("task id"), max_length=255, unique=True)
    date_revoked = models.DateTimeField(_("revoked"), db_index=True)
    expires = models.DateTimeField(_("expires"), null=True, blank=True, db_index=True)

    objects = RevokedTaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("revoked task")
        verbose_name_plural = _("revoked tasks")

    def __str__(self) -> str:
        return f"{self.task_id} revoked"
