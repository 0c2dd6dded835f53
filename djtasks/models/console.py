"""Entries of the admin console that are not tables: the dashboard and the queues (storage layer).

Neither has rows in the database: the dashboard reads other tables and the queues live in
the broker. They are unmanaged models so that the admin lists them beside the real ones,
links them from its index, and so that their permissions (``djtasks.view_dashboard``,
``djtasks.purge_queue``) are ordinary Django permissions that can be given to a group.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Dashboard(models.Model):
    """The console's overview page: workers, queue depths, throughput, failures."""

    class Meta:
        managed = False
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
        default_permissions = ("view",)

    def __str__(self) -> str:
        return str(self._meta.verbose_name)


class Queue(models.Model):
    """A broker queue, as the console shows it: depth and consumers, asked of the broker."""

    name = models.CharField(_("name"), max_length=255, primary_key=True)

    class Meta:
        managed = False
        verbose_name = _("queue")
        verbose_name_plural = _("queues")
        default_permissions = ("view",)
        permissions = [("purge_queue", _("Can delete the messages waiting in a queue"))]

    def __str__(self) -> str:
        return self.name
